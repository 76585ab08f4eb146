//! Parse errors: each kind of mistake is reported at its 1-based line and column,
//! with a message naming what is wrong.

use snipjit_ir::text::{ParseError, parse};

/// Parses `src` and returns the error, failing the test if it parses.
fn err(src: &str) -> ParseError {
    match parse(src, "bad.sg") {
        Ok(g) => panic!("parsed, but should not have:\n{src}\n{g:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position and that its message contains `msg`.
#[track_caller]
fn check(src: &str, line: usize, col: usize, msg: &str) {
    let e = err(src);
    assert_eq!((e.line, e.col), (line, col), "wrong position for: {e}");
    assert!(
        e.message.contains(msg),
        "message {:?} lacks {msg:?}",
        e.message
    );
    assert_eq!(e.file, "bad.sg");
}

/// A graph with input x: f32[N, 4] and the given body lines.
fn body(lines: &str) -> String {
    format!("graph g(x: f32[N, 4]) {{\n{lines}}}\n")
}

#[test]
fn display_is_file_line_col_message() {
    let e = err(&body("  y = Foo(x)\n  return y\n"));
    assert_eq!(e.to_string(), "bad.sg:2:7: unknown op 'Foo'");
}

#[test]
fn unknown_op() {
    check(
        &body("  y = Foo(x)\n  return y\n"),
        2,
        7,
        "unknown op 'Foo'",
    );
    check(
        &body("  y = Parameter()\n  return y\n"),
        2,
        7,
        "declared in the graph header",
    );
    check(
        &body("  y = Result(x)\n  return y\n"),
        2,
        7,
        "declared with return",
    );
}

#[test]
fn unknown_value_name() {
    check(
        &body("  y = Add(x, z)\n  return y\n"),
        2,
        14,
        "unknown value 'z'",
    );
    check(
        &body("  y = Relu(x)\n  return w\n"),
        3,
        10,
        "unknown value 'w'",
    );
    check(
        &body("  y = Relu(y)\n  return y\n"),
        2,
        12,
        "unknown value 'y'",
    );
    check(
        "graph g(a: f32[], b: f32[]) {\n  y = Add(a, b)\n  input b\n  return y\n}\n",
        2,
        14,
        "input 'b' is used before its 'input' line",
    );
}

#[test]
fn bad_dtype() {
    check(
        "graph g(x: f33[4]) {\n  return x\n}\n",
        1,
        12,
        "unknown dtype 'f33'",
    );
    check(
        &body("  y: float[N, 4] = Relu(x)\n  return y\n"),
        2,
        6,
        "unknown dtype 'float'",
    );
    check(
        &body("  y = Convert(x, to=f64)\n  return y\n"),
        2,
        21,
        "unknown dtype 'f64'",
    );
    check(
        &body("  y = Convert(x, to=1)\n  return y\n"),
        2,
        21,
        "attribute 'to' of Convert must be a dtype",
    );
}

#[test]
fn bad_dim() {
    check(
        "graph g(x: f32[-1]) {\n  return x\n}\n",
        1,
        16,
        "bad dim -1",
    );
    check(
        "graph g(x: f32[2.5]) {\n  return x\n}\n",
        1,
        16,
        "bad dim 2.5",
    );
    check(
        "graph g(x: f32[99999999999999999999999]) {\n  return x\n}\n",
        1,
        16,
        "bad dim",
    );
    check(
        "graph g(x: f32[- N]) {\n  return x\n}\n",
        1,
        16,
        "cannot be negative",
    );
    check(
        "graph g(x: f32[N,]) {\n  return x\n}\n",
        1,
        18,
        "expected a dim",
    );
}

#[test]
fn wrong_number_of_inputs() {
    check(
        &body("  y = Add(x)\n  return y\n"),
        2,
        7,
        "node 'y' (Add): expects 2 inputs, got 1",
    );
    check(
        &body("  y = Relu(x, x)\n  return y\n"),
        2,
        7,
        "expects 1 input, got 2",
    );
    check(
        &body("  y = Select(x, x)\n  return y\n"),
        2,
        7,
        "expects 3 inputs, got 2",
    );
    check(
        &body("  y = Concat(axis=0)\n  return y\n"),
        2,
        7,
        "Concat needs at least one input",
    );
    check(
        &body(
            "  y = Subgraph(x, x, kind=elementwise) graph b(p: f32[N, 4]) {\n    return p\n  }\n  return y\n",
        ),
        2,
        7,
        "subgraph body has 1 parameters, node has 2 inputs",
    );
    check(
        &body("  c = Constant()\n  return c\n"),
        2,
        7,
        "Constant takes one literal, got 0",
    );
    check(
        &body("  c = Constant(1, 2)\n  return c\n"),
        2,
        7,
        "Constant takes one literal, got 2",
    );
}

#[test]
fn wrong_attributes() {
    check(
        &body("  y = Softmax(x)\n  return y\n"),
        2,
        7,
        "Softmax needs the attribute 'axis'",
    );
    check(
        &body("  y = Softmax(x, axis=-1, dim=1)\n  return y\n"),
        2,
        27,
        "unknown attribute 'dim' for Softmax",
    );
    check(
        &body("  y = Softmax(x, axis=1.5)\n  return y\n"),
        2,
        23,
        "attribute 'axis' of Softmax must be an integer",
    );
    check(
        &body("  y = Softmax(x, axis=-1, axis=0)\n  return y\n"),
        2,
        27,
        "attribute 'axis' is given twice",
    );
    check(
        &body("  y = MatMul(x, x, transpose_b=1)\n  return y\n"),
        2,
        32,
        "must be true or false",
    );
    check(
        &body("  y = Transpose(x, perm=[1, -1])\n  return y\n"),
        2,
        25,
        "perm entry -1 is negative",
    );
    check(
        &body("  y = Transpose(x, perm=1)\n  return y\n"),
        2,
        25,
        "must be a list of integers",
    );
    check(
        &body("  y = Transpose(x, perm=[0, 0])\n  return y\n"),
        2,
        7,
        "not a permutation",
    );
    check(
        &body("  y = ReduceSum(x, axes=[true])\n  return y\n"),
        2,
        26,
        "must list integers",
    );
    check(
        &body("  y = Clamp(x, min=0)\n  return y\n"),
        2,
        7,
        "Clamp needs the attribute 'max'",
    );
    check(
        &body("  y = Clamp(x, min=0, max=true)\n  return y\n"),
        2,
        27,
        "expected a f32 number, found a bool",
    );
    check(
        &body("  y = Relu(x, alpha=1)\n  return y\n"),
        2,
        15,
        "unknown attribute 'alpha' for Relu",
    );
    check(
        &body("  y = Relu(axis=1, x)\n  return y\n"),
        2,
        20,
        "positional argument after an attribute",
    );
    check(
        &body("  y = Subgraph(x) graph b(p: f32[N, 4]) {\n    return p\n  }\n  return y\n"),
        2,
        7,
        "'kind'",
    );
    check(
        &body(
            "  y = Subgraph(x, kind=fast) graph b(p: f32[N, 4]) {\n    return p\n  }\n  return y\n",
        ),
        2,
        24,
        "elementwise, mha or softmax",
    );
    check(
        &body("  y = Subgraph(x, kind=mha)\n  return y\n"),
        2,
        7,
        "Subgraph needs a body",
    );
    check(
        &body("  y = Relu(x) graph b() {\n    return\n  }\n  return y\n"),
        2,
        7,
        "only Subgraph takes a graph body",
    );
    check(
        &body("  y = Relu(1)\n  return y\n"),
        2,
        12,
        "expected a value name, found number 1",
    );
    check(
        &body("  y = Constant(x)\n  return y\n"),
        2,
        16,
        "expected a literal",
    );
    check(
        &body("  y = Constant(nan(12))\n  return y\n"),
        2,
        20,
        "NaN's bits in hex",
    );
}

#[test]
fn type_mismatch_names_the_node() {
    check(
        &body("  y: f32[N, 5] = Relu(x)\n  return y\n"),
        2,
        6,
        "node 'y' (Relu): written type f32[N, 5] of 'y' differs from the inferred type f32[N, 4]",
    );
    check(
        &body("  y: i32[N, 4] = Relu(x) @act\n  return y\n"),
        2,
        6,
        "node 'act' (Relu): written type i32[N, 4]",
    );
    check(
        &body("  y: f32[M, 4] = Relu(x)\n  return y\n"),
        2,
        6,
        "inferred type f32[N, 4]",
    );
    check(
        &body("  y: f32[?, 4] = Relu(x)\n  return y\n"),
        2,
        6,
        "inferred type f32[N, 4]",
    );
    check(
        &body("  b = Not(x)\n  return b\n"),
        2,
        7,
        "node 'b' (Not): Not needs a bool input, got f32",
    );
    check(
        &body("  c: f32[3] = Constant([1, 2, 3])\n  y = Add(x, c)\n  return y\n"),
        3,
        7,
        "do not broadcast",
    );
    check(
        &body(
            "  y = Subgraph(x, kind=elementwise) graph b(p: f32[N, 4]) {\n    q = Relu(p)\n    return p, q\n  }\n  return y\n",
        ),
        2,
        3,
        "the op has 2 outputs, but 1 names are written",
    );
}

#[test]
fn bad_constants() {
    check(
        &body("  c: f32[2, 2] = Constant([1, 2, 3])\n  return c\n"),
        2,
        27,
        "needs 4 elements, got 3",
    );
    check(
        &body("  c: f32[N] = Constant([1])\n  return c\n"),
        2,
        6,
        "a Constant needs a static shape",
    );
    check(
        &body("  c: u8[] = Constant(256)\n  return c\n"),
        2,
        22,
        "256 is out of range for u8",
    );
    check(
        &body("  c: i32[] = Constant(1.5)\n  return c\n"),
        2,
        23,
        "expected an integer for i32",
    );
    check(
        &body("  c: f32[] = Constant(1e39)\n  return c\n"),
        2,
        23,
        "out of range for f32",
    );
    check(
        &body("  c: f16[] = Constant(65520)\n  return c\n"),
        2,
        23,
        "out of range for f16",
    );
    check(
        &body("  c: f32[] = Constant(true)\n  return c\n"),
        2,
        23,
        "found a bool",
    );
    check(
        &body("  c: bool[] = Constant(1)\n  return c\n"),
        2,
        24,
        "expected true or false",
    );
    check(
        &body("  c: f32[] = Constant(1x)\n  return c\n"),
        2,
        23,
        "bad number '1x'",
    );
    check(
        &body("  c: f32[] = Constant(nan(0x3f800000))\n  return c\n"),
        2,
        23,
        "not the bits of a f32 NaN",
    );
    check(
        &body("  c: f32[2] = Constant([1, -nan])\n  return c\n"),
        2,
        29,
        "a number or 'inf' after '-'",
    );
}

#[test]
fn duplicate_names() {
    check(
        "graph g(x: f32[], x: f32[]) {\n  return x\n}\n",
        1,
        19,
        "duplicate name 'x'",
    );
    check(
        &body("  x = Relu(x)\n  return x\n"),
        2,
        3,
        "duplicate name 'x'",
    );
    check(
        &body("  y = Relu(x)\n  y = Relu(x)\n  return y\n"),
        3,
        3,
        "duplicate name 'y'",
    );
    check(
        &body(
            "  y, y = Subgraph(x, kind=elementwise) graph b(p: f32[N, 4]) {\n    q = Relu(p)\n    return p, q\n  }\n  return y\n",
        ),
        2,
        6,
        "duplicate name 'y'",
    );
    check(
        "graph g(a: f32[]) {\n  input a\n  input a\n  return a\n}\n",
        3,
        9,
        "input 'a' is placed twice",
    );
    check(
        &body("  output 0\n  output 0\n  return x\n"),
        3,
        10,
        "output 0 is placed twice",
    );
}

#[test]
fn placement_lines() {
    check(
        &body("  input y\n  return x\n"),
        2,
        9,
        "'y' is not an input in the graph header",
    );
    check(
        &body("  output 1\n  return x\n"),
        2,
        10,
        "output 1 does not exist: return has 1 items",
    );
    check(
        &body("  output 0\n  y = Relu(x)\n  return y\n"),
        2,
        10,
        "output 0 returns 'y', which is not defined before this line",
    );
    check(
        &body("  output x\n  return x\n"),
        2,
        10,
        "index of a return item",
    );
}

#[test]
fn trailing_garbage() {
    check(
        &format!("{}junk\n", body("  return x\n")),
        4,
        1,
        "trailing 'junk' after the graph's closing '}'",
    );
    check(
        &format!("{}graph h() {{\n  return\n}}\n", body("  return x\n")),
        4,
        1,
        "trailing 'graph'",
    );
    check(
        &body("  y = Relu(x) extra\n  return y\n"),
        2,
        15,
        "unexpected 'extra' after the end of the statement",
    );
    check(
        &body("  y = Relu(x)\n  return y junk\n"),
        3,
        12,
        "unexpected 'junk'",
    );
    check(
        &body("  return x\n  y = Relu(x)\n"),
        3,
        3,
        "statement after return",
    );
    check(
        "graph g() { return }\n",
        1,
        13,
        "expected end of line after '{'",
    );
    check(
        "graph g(x: f32[]) {\n  return x\n} }\n",
        3,
        3,
        "trailing '}'",
    );
}

#[test]
fn unterminated_things() {
    check(
        "graph g(x: f32[]) {\n  return x\n",
        3,
        1,
        "unterminated graph body: '{' at 1:19 is never closed",
    );
    check(
        "graph g(x: f32[]",
        1,
        17,
        "unterminated graph header '(' opened at 1:8",
    );
    check(
        "graph g(x: f32[4, 4",
        1,
        20,
        "unterminated shape '[' opened at 1:15",
    );
    check(
        &body("  y = Add(x, x\n  return y\n"),
        3,
        3,
        "expected ')' to close the call '(' opened at 2:10, found 'return'",
    );
    check(
        "graph g(x: f32[]) {\n  y = Add(x, x",
        2,
        15,
        "unterminated call '(' opened at 2:10",
    );
    check(
        &body("  c: f32[2] = Constant([1, 2\n  return c\n"),
        3,
        3,
        "expected ']' to close the list '[' opened at 2:24",
    );
    check(
        &body("  y = Relu(\"x)\n  return y\n"),
        2,
        12,
        "unterminated string",
    );
    check("graph \"g", 1, 7, "unterminated string");
    check(
        "graph g(x: f32[]) {\n  y = Subgraph(x, kind=elementwise) graph b(p: f32[]) {\n    return p\n",
        4,
        1,
        "unterminated graph body: '{' at 2:55 is never closed",
    );
    check("", 1, 1, "expected 'graph', found end of file");
    check(
        "# only a comment\n",
        2,
        1,
        "expected 'graph', found end of file",
    );
}

#[test]
fn missing_return_and_other_syntax() {
    check(
        &body("  y = Relu(x)\n"),
        3,
        1,
        "graph 'g' has no return statement",
    );
    check(
        &body("  y Relu(x)\n  return y\n"),
        2,
        5,
        "expected '=' or ','",
    );
    check(
        &body("  y = (x)\n  return y\n"),
        2,
        7,
        "expected an op name",
    );
    check(
        "graph g(x f32[]) {\n  return x\n}\n",
        1,
        11,
        "expected ':' and the input's type",
    );
    check(
        "graph g(x: f32) {\n  return x\n}\n",
        1,
        15,
        "expected '[' and the dims",
    );
    check(
        "graph (x: f32[]) {\n  return x\n}\n",
        1,
        7,
        "expected a graph name",
    );
    check(
        &body("  y = Relu(x) @\n  return y\n"),
        2,
        16,
        "expected a node name after '@'",
    );
    check(
        "graph g() {\n  return\n}\n%",
        4,
        1,
        "unexpected character '%'",
    );
    check(
        "graph g() {\n  a = Constant(\"\\q\")\n  return a\n}\n",
        2,
        17,
        "invalid escape '\\q'",
    );
}

#[test]
fn nesting_is_bounded() {
    let mut src = String::from("graph g(x: f32[]) {\n");
    for i in 0..40 {
        src.push_str(&format!(
            "y{i} = Subgraph(x, kind=elementwise) graph b{i}(x: f32[]) {{\n"
        ));
    }
    let e = err(&src);
    assert!(e.message.contains("nested deeper than 32 levels"), "{e}");
    assert_eq!(e.line, 34);
}

#[test]
fn errors_inside_subgraph_bodies_point_into_the_body() {
    check(
        &body(
            "  y = Subgraph(x, kind=elementwise) graph b(p: f32[N, 4]) {\n    q = Relu(r)\n    return q\n  }\n  return y\n",
        ),
        3,
        14,
        "unknown value 'r'",
    );
}
