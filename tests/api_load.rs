//! `load_model` and `parse_model`: formats chosen by extension, errors naming the file.

use std::path::PathBuf;

use snipjit::{Compiler, Error, Options, Tensor};

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snipjit-api-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

const SG: &str = "graph twice(x: f32[N]) {
  two: f32[] = Constant(2.0)
  y: f32[N] = Mul(x, two)
  return y
}
";

#[test]
fn sg_files_load_and_run() {
    for name in ["twice.sg", "TWICE.SG"] {
        let g = snipjit::load_model(&temp_file(name, SG.as_bytes())).unwrap();
        assert_eq!(g, snipjit::parse_model(SG, "twice.sg").unwrap());
        let m = Compiler::new(Options::default())
            .unwrap()
            .compile(g)
            .unwrap();
        let out = m
            .run(&[Tensor::from_f32(&[2], vec![1.5, -4.0]).unwrap()])
            .unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[3.0, -8.0]);
    }
}

#[test]
fn parse_errors_carry_file_line_and_column() {
    let e = snipjit::parse_model(
        "graph g(x: f32[2]) {\n  y: f32[2] = Nope(x)\n  return y\n}\n",
        "m.sg",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Parse(_)), "{e}");
    assert!(e.to_string().starts_with("m.sg:2:"), "{e}");
    assert!(e.to_string().contains("Nope"), "{e}");
}

#[test]
fn unknown_extensions_are_refused() {
    for name in ["model.txt", "model", "model.onnx.bak"] {
        let p = temp_file(name, SG.as_bytes());
        let e = snipjit::load_model(&p).unwrap_err();
        assert!(matches!(e, Error::UnknownModelFormat { .. }), "{e}");
        assert!(
            e.to_string().contains("expected a .onnx or .sg file"),
            "{e}"
        );
    }
}

#[test]
fn unreadable_and_malformed_files_are_errors() {
    let missing = std::env::temp_dir().join("snipjit-definitely-missing.sg");
    let e = snipjit::load_model(&missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        e.to_string().contains("snipjit-definitely-missing.sg"),
        "{e}"
    );

    let p = temp_file("bad.onnx", b"\x08\x07\x12\xff\xff\xff\xff\x0f");
    let e = snipjit::load_model(&p).unwrap_err();
    assert!(matches!(e, Error::Onnx { .. }), "{e}");
    assert!(e.to_string().contains("bad.onnx: "), "{e}");

    let p = temp_file("bin.sg", &[0xff, 0x00, 0xfe]);
    assert!(matches!(snipjit::load_model(&p), Err(Error::Io { .. })));
}
