//! End-to-end tests of the `snipjit` binary: models and inputs are written to a
//! temporary directory, the binary runs, and its files, stdout, stderr and exit code
//! are checked against values computed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use snipjit::ir::{BinaryOp, Op, UnaryOp};
use snipjit::{DType, Dim, Graph, Shape, Tensor, TensorData, TensorType};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("snipjit-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The sorted names of the entries in `sub` (relative to this dir).
    fn list(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn snipjit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snipjit"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the snipjit binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts a clean failure: exit code 1, exactly one stderr line starting with
/// `error: ` and containing every fragment of `want`, nothing on stdout.
fn assert_error(o: &Output, want: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err:?}");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "stderr {err:?} should contain {w:?}");
    }
    assert_eq!(stdout(o), "", "nothing on stdout");
    err
}

fn f32_type(dims: &[Dim]) -> TensorType {
    TensorType::new(DType::F32, Shape::from_iter(dims.iter().cloned()))
}

/// `y = relu(x + b)` and `z = x * 2`, for `x: f32[N, 3]`, `b: f32[3]`.
fn relu_bias_model() -> Graph {
    let mut g = Graph::new("relu_bias");
    let x = g.add_input("x", f32_type(&[Dim::sym("N"), Dim::Static(3)]));
    let b = g.add_input("b", f32_type(&[Dim::Static(3)]));
    let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, b]).unwrap();
    let y = g.add_op("y", Op::Unary(UnaryOp::Relu), &[s]).unwrap();
    let two = g
        .add_op("two", Op::Constant(Tensor::scalar_f32(2.0)), &[])
        .unwrap();
    let z = g.add_op("z", Op::Binary(BinaryOp::Mul), &[x, two]).unwrap();
    g.add_output("y", y);
    g.add_output("z", z);
    g
}

/// `out = x + y` for `x, y: f32[N]`.
fn add_model(out_name: &str) -> Graph {
    let mut g = Graph::new("add");
    let x = g.add_input("x", f32_type(&[Dim::sym("N")]));
    let y = g.add_input("y", f32_type(&[Dim::sym("N")]));
    let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, y]).unwrap();
    g.add_output(out_name, s);
    g
}

fn write_sg(dir: &TempDir, name: &str, g: &Graph) -> PathBuf {
    let p = dir.path(name);
    std::fs::write(&p, snipjit::ir::text::print(g)).unwrap();
    p
}

fn write_npy(dir: &TempDir, name: &str, t: &Tensor) -> PathBuf {
    let p = dir.path(name);
    snipjit::npy::write(&p, t).unwrap();
    p
}

fn f32_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_f32(shape, v).unwrap()
}

/// The relu_bias model and inputs in a fresh dir: (dir, model path, x, b).
fn relu_bias_setup(tag: &str) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    write_sg(&dir, "m.sg", &relu_bias_model());
    write_npy(
        &dir,
        "x.npy",
        &f32_tensor(&[2, 3], vec![-1.0, 0.5, 2.0, 3.0, -4.0, 0.25]),
    );
    write_npy(&dir, "b.npy", &f32_tensor(&[3], vec![0.5, -1.0, 1.0]));
    std::fs::create_dir(dir.path("out")).unwrap();
    let model = dir.path("m.sg").display().to_string();
    (dir, model)
}

#[test]
fn run_writes_every_output() {
    let (dir, model) = relu_bias_setup("run");
    let o = snipjit(
        &[
            "run",
            &model,
            "--input",
            "x=x.npy",
            "--input",
            "b=b.npy",
            "--output-dir",
            "out",
        ],
        &dir.0,
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(dir.list("out"), ["y.npy", "z.npy"]);
    let y = snipjit::npy::read(&dir.path("out/y.npy")).unwrap();
    let z = snipjit::npy::read(&dir.path("out/z.npy")).unwrap();
    // relu(x + b), row by row.
    assert_eq!(y, f32_tensor(&[2, 3], vec![0.0, 0.0, 3.0, 3.5, 0.0, 1.25]));
    assert_eq!(z, f32_tensor(&[2, 3], vec![-2.0, 1.0, 4.0, 6.0, -8.0, 0.5]));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("y: f32[2, 3] -> out"), "{out}");
}

#[test]
fn run_defaults_to_the_current_directory_and_any_n() {
    let dir = TempDir::new("cwd");
    write_sg(&dir, "m.sg", &relu_bias_model());
    // N = 1 this time: the dynamic dim takes whatever the input has.
    write_npy(&dir, "x.npy", &f32_tensor(&[1, 3], vec![1.0, 2.0, 3.0]));
    write_npy(&dir, "b.npy", &f32_tensor(&[3], vec![-2.0, -2.0, -2.0]));
    let o = snipjit(
        &[
            "run",
            "m.sg",
            "-i",
            "b=b.npy",
            "-i",
            "x=x.npy",
            "--threads",
            "2",
        ],
        &dir.0,
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let y = snipjit::npy::read(&dir.path("y.npy")).unwrap();
    assert_eq!(y, f32_tensor(&[1, 3], vec![0.0, 0.0, 1.0]));
    assert!(dir.path("z.npy").exists());
}

#[test]
fn stats_is_one_json_line_and_nothing_else() {
    let (dir, model) = relu_bias_setup("stats");
    let o = snipjit(
        &[
            "run", &model, "-i", "x=x.npy", "-i", "b=b.npy", "-o", "out", "--stats",
        ],
        &dir.0,
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.ends_with('\n'));
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["compilations", "subgraphs"]);
    assert!(obj["subgraphs"].is_array());
    assert!(obj["compilations"].is_u64());
    for sg in obj["subgraphs"].as_array().unwrap() {
        let mut k: Vec<&str> = sg.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, ["jit", "kind", "nodes"]);
    }
    // The outputs are written with --stats too.
    assert_eq!(dir.list("out"), ["y.npy", "z.npy"]);
}

#[test]
fn output_names_cannot_escape_the_output_directory() {
    let dir = TempDir::new("names");
    std::fs::create_dir_all(dir.path("a/out")).unwrap();
    let mut g = Graph::new("escape");
    let x = g.add_input("x", f32_type(&[Dim::Static(2)]));
    let y = g.add_op("y", Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    g.add_output("../evil", y);
    g.add_output("..", y);
    g.add_output("sub/dir", y);
    write_sg(&dir, "m.sg", &g);
    write_npy(&dir, "x.npy", &f32_tensor(&[2], vec![1.0, -2.0]));
    let o = snipjit(&["run", "m.sg", "-i", "x=x.npy", "-o", "a/out"], &dir.0);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(dir.list("a"), ["out"]);
    assert_eq!(dir.list("a/out"), [".._evil.npy", "__.npy", "sub_dir.npy"]);
    let want = f32_tensor(&[2], vec![-1.0, 2.0]);
    for f in [".._evil.npy", "__.npy", "sub_dir.npy"] {
        assert_eq!(
            snipjit::npy::read(&dir.path("a/out").join(f)).unwrap(),
            want
        );
    }
}

#[test]
fn missing_output_directory_is_created() {
    let (dir, model) = relu_bias_setup("mkdir");
    let o = snipjit(
        &[
            "run",
            &model,
            "-i",
            "x=x.npy",
            "-i",
            "b=b.npy",
            "-o",
            "new/deeper",
        ],
        &dir.0,
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(dir.list("new/deeper"), ["y.npy", "z.npy"]);
}

/// Runs the relu_bias model with `args` after the model path and checks that it fails
/// cleanly, mentioning `want`, and writes nothing.
fn run_fails(tag: &str, setup: impl FnOnce(&TempDir), args: &[&str], want: &[&str]) {
    let (dir, model) = relu_bias_setup(tag);
    setup(&dir);
    let mut full = vec!["run", model.as_str()];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "out"]);
    let o = snipjit(&full, &dir.0);
    assert_error(&o, want);
    assert_eq!(dir.list("out"), Vec::<String>::new(), "no output files");
}

#[test]
fn missing_input_is_an_error() {
    run_fails(
        "missing",
        |_| {},
        &["-i", "x=x.npy"],
        &["missing input 'b'"],
    );
}

#[test]
fn unknown_input_is_an_error() {
    run_fails(
        "unknown",
        |_| {},
        &["-i", "x=x.npy", "-i", "b=b.npy", "-i", "w=b.npy"],
        &["unknown input 'w'", "'x', 'b'"],
    );
}

#[test]
fn duplicate_input_is_an_error() {
    run_fails(
        "dup",
        |_| {},
        &["-i", "x=x.npy", "-i", "b=b.npy", "-i", "x=x.npy"],
        &["input 'x' is given more than once"],
    );
}

#[test]
fn wrong_static_dim_is_an_error() {
    run_fails(
        "dim",
        |d| {
            write_npy(d, "b4.npy", &f32_tensor(&[4], vec![0.0; 4]));
        },
        &["-i", "x=x.npy", "-i", "b=b4.npy"],
        &["input 'b'", "dim 0 is 4", "expects 3"],
    );
}

#[test]
fn wrong_rank_is_an_error() {
    run_fails(
        "rank",
        |d| {
            write_npy(d, "x1.npy", &f32_tensor(&[3], vec![0.0; 3]));
        },
        &["-i", "x=x1.npy", "-i", "b=b.npy"],
        &["input 'x'", "rank 1", "rank 2"],
    );
}

#[test]
fn wrong_dtype_is_an_error() {
    run_fails(
        "dtype",
        |d| {
            let t = Tensor::new(vec![3], TensorData::I32(vec![1, 2, 3])).unwrap();
            write_npy(d, "bi.npy", &t);
        },
        &["-i", "x=x.npy", "-i", "b=bi.npy"],
        &["input 'b'", "dtype is i32", "expects f32"],
    );
}

#[test]
fn inconsistent_symbolic_dims_are_an_error() {
    let dir = TempDir::new("sym");
    std::fs::create_dir(dir.path("out")).unwrap();
    write_sg(&dir, "add.sg", &add_model("s"));
    write_npy(&dir, "x.npy", &f32_tensor(&[3], vec![1.0; 3]));
    write_npy(&dir, "y.npy", &f32_tensor(&[4], vec![1.0; 4]));
    let o = snipjit(
        &[
            "run", "add.sg", "-i", "x=x.npy", "-i", "y=y.npy", "-o", "out",
        ],
        &dir.0,
    );
    assert_error(&o, &["input 'y'", "('N') is 4", "input 'x' has N = 3"]);
    assert_eq!(dir.list("out"), Vec::<String>::new());
}

#[test]
fn malformed_npy_is_an_error() {
    run_fails(
        "badnpy",
        |d| std::fs::write(d.path("junk.npy"), b"this is not numpy data").unwrap(),
        &["-i", "x=junk.npy", "-i", "b=b.npy"],
        &["junk.npy", "invalid .npy file"],
    );
}

#[test]
fn truncated_npy_is_an_error() {
    run_fails(
        "trunc",
        |d| {
            let bytes = std::fs::read(d.path("x.npy")).unwrap();
            std::fs::write(d.path("t.npy"), &bytes[..bytes.len() - 3]).unwrap();
        },
        &["-i", "x=t.npy", "-i", "b=b.npy"],
        &["t.npy", "truncated data"],
    );
}

#[test]
fn unreadable_input_file_is_an_error() {
    run_fails(
        "noinput",
        |_| {},
        &["-i", "x=nope.npy", "-i", "b=b.npy"],
        &["cannot read", "nope.npy"],
    );
}

#[test]
fn bad_input_syntax_is_an_error() {
    for bad in ["x", "=x.npy", "x="] {
        run_fails(
            "syntax",
            |_| {},
            &["-i", bad, "-i", "b=b.npy"],
            &[&format!("bad --input '{bad}'"), "NAME=FILE.npy"],
        );
    }
}

#[test]
fn thread_counts_are_checked() {
    run_fails(
        "threads0",
        |_| {},
        &["-i", "x=x.npy", "-i", "b=b.npy", "--threads", "0"],
        &["threads must be at least 1"],
    );
    run_fails(
        "threads1000",
        |_| {},
        &["-i", "x=x.npy", "-i", "b=b.npy", "--threads", "1000"],
        &["too many threads"],
    );
}

/// Runs a model file that cannot be loaded and checks the error.
fn bad_model(tag: &str, file: &str, contents: Option<&[u8]>, want: &[&str]) {
    let dir = TempDir::new(tag);
    std::fs::create_dir(dir.path("out")).unwrap();
    if let Some(c) = contents {
        std::fs::write(dir.path(file), c).unwrap();
    }
    write_npy(&dir, "x.npy", &f32_tensor(&[1], vec![1.0]));
    let o = snipjit(&["run", file, "-i", "x=x.npy", "-o", "out"], &dir.0);
    assert_error(&o, want);
    assert_eq!(dir.list("out"), Vec::<String>::new());
    let o = snipjit(&["dump", file], &dir.0);
    assert_error(&o, want);
}

#[test]
fn malformed_sg_is_an_error_with_a_position() {
    bad_model(
        "badsg",
        "m.sg",
        Some(b"graph g(x: f32[2]) {\n  y: f32[2] = Add(x\n}\n"),
        &["m.sg:"],
    );
    bad_model("binsg", "m.sg", Some(&[0xff, 0xfe, 0, 1, 2]), &["m.sg"]);
}

#[test]
fn unknown_op_is_an_error() {
    let text = snipjit::ir::text::print(&add_model("s"));
    assert!(text.contains("Add("), "{text}");
    let text = text.replace("Add(", "Frobnicate(");
    bad_model(
        "unknownop",
        "m.sg",
        Some(text.as_bytes()),
        &["m.sg:", "Frobnicate"],
    );
}

#[test]
fn malformed_onnx_is_an_error() {
    bad_model(
        "badonnx",
        "m.onnx",
        Some(b"\xff\xff\xff\xff not protobuf"),
        &["m.onnx", "not a valid ONNX model"],
    );
}

#[test]
fn unknown_model_extension_and_missing_model_are_errors() {
    bad_model(
        "ext",
        "m.txt",
        Some(b"whatever"),
        &["m.txt", "expected a .onnx or .sg file"],
    );
    bad_model("nomodel", "gone.sg", None, &["cannot read", "gone.sg"]);
}

#[test]
fn failed_write_leaves_no_output_files() {
    let (dir, model) = relu_bias_setup("rollback");
    // z.npy is a non-empty directory, so renaming z into place fails after y.npy
    // was already renamed: y.npy must be removed again.
    std::fs::create_dir_all(dir.path("out/z.npy/keep")).unwrap();
    let o = snipjit(
        &["run", &model, "-i", "x=x.npy", "-i", "b=b.npy", "-o", "out"],
        &dir.0,
    );
    assert_error(&o, &["cannot write", "z.npy"]);
    assert_eq!(dir.list("out"), ["z.npy"]);
    assert_eq!(dir.list("out/z.npy"), ["keep"]);
}

#[test]
fn output_dir_that_is_a_file_is_an_error() {
    let (dir, model) = relu_bias_setup("dirfile");
    std::fs::write(dir.path("plain"), b"x").unwrap();
    let o = snipjit(
        &[
            "run", &model, "-i", "x=x.npy", "-i", "b=b.npy", "-o", "plain",
        ],
        &dir.0,
    );
    assert_error(&o, &["cannot write", "plain"]);
    assert_eq!(std::fs::read(dir.path("plain")).unwrap(), b"x");
}

#[test]
fn dump_prints_the_sg_text() {
    let dir = TempDir::new("dump");
    let g = relu_bias_model();
    write_sg(&dir, "m.sg", &g);
    let o = snipjit(&["dump", "m.sg"], &dir.0);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text, snipjit::ir::text::print(&g));
    assert_eq!(snipjit::parse_model(&text, "dump").unwrap(), g);
}

#[test]
fn demo_runs_and_checks_itself() {
    let dir = TempDir::new("demo");
    let o = snipjit(&["demo"], &dir.0);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("GeluTanh"), "the model text is shown: {out}");
    assert!(out.contains("input  x: f32[4, 1024]"), "{out}");
    assert!(out.contains("output y: f32[4, 1024]"), "{out}");
    assert!(out.contains("max abs error"), "{out}");
    let stats = out
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .expect("a stats line");
    let v: serde_json::Value = serde_json::from_str(stats).unwrap();
    assert!(v["subgraphs"].is_array() && v["compilations"].is_u64());
    // The demo writes no files.
    assert_eq!(dir.list("."), Vec::<String>::new());
}

#[test]
fn usage_errors_are_clap_errors() {
    let dir = TempDir::new("usage");
    let o = snipjit(&[], &dir.0);
    assert_eq!(o.status.code(), Some(2));
    let o = snipjit(&["run", "m.sg", "--isa", "sse9"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sse9"));
    let o = snipjit(&["run", "m.sg", "--threads", "many"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
}

/// An ONNX model `y = Relu(x + b)` with `x: f32[N, 3]` and initializer `b = [1, -1, 0]`.
fn onnx_relu_bias() -> Vec<u8> {
    use prost::Message;
    use snipjit::ir::onnx::proto::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
        TypeProto, ValueInfoProto, data_type, tensor_shape_proto, type_proto,
    };
    let dim = |d: &str| tensor_shape_proto::Dimension {
        value: Some(match d.parse::<i64>() {
            Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
            Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.into()),
        }),
        denotation: String::new(),
    };
    let value = |name: &str, dims: &[&str]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|d| dim(d)).collect(),
                }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "relu_bias".into(),
            node: vec![node("Add", &["x", "b"], "s"), node("Relu", &["s"], "y")],
            initializer: vec![TensorProto {
                name: "b".into(),
                dims: vec![3],
                data_type: data_type::FLOAT,
                float_data: vec![1.0, -1.0, 0.0],
                ..Default::default()
            }],
            input: vec![value("x", &["N", "3"])],
            output: vec![value("y", &["N", "3"])],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn onnx_model_runs() {
    let dir = TempDir::new("onnx");
    std::fs::write(dir.path("m.onnx"), onnx_relu_bias()).unwrap();
    write_npy(
        &dir,
        "x.npy",
        &f32_tensor(&[2, 3], vec![-2.0, 0.5, 1.0, 0.0, 2.0, -3.0]),
    );
    let o = snipjit(&["run", "m.onnx", "-i", "x=x.npy", "-o", "out"], &dir.0);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let y = snipjit::npy::read(&dir.path("out/y.npy")).unwrap();
    assert_eq!(y, f32_tensor(&[2, 3], vec![0.0, 0.0, 1.0, 1.0, 1.0, 0.0]));
    let o = snipjit(&["dump", "m.onnx"], &dir.0);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("Relu("), "{}", stdout(&o));
}
