//! What compilation did to a model: which subgraphs it found and which got a kernel.

use std::fmt::Write;

/// One fused subgraph of a compiled model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubgraphStats {
    /// The subgraph kind (`elementwise`, `mha`, `softmax`).
    pub kind: String,
    /// Compute nodes in the body (Parameters, Results and Constants not counted).
    pub nodes: usize,
    /// True if the subgraph runs as a JIT kernel, false if on the interpreter.
    pub jit: bool,
}

/// Compilation statistics of a [`crate::CompiledModel`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    /// The fused subgraphs, in topological order.
    pub subgraphs: Vec<SubgraphStats>,
    /// How many kernels were compiled.
    pub compilations: usize,
}

impl Stats {
    /// One line of JSON, keys in this order:
    /// `{"subgraphs":[{"kind":"elementwise","nodes":3,"jit":true}],"compilations":1}`.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"subgraphs\":[");
        for (i, sg) in self.subgraphs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"kind\":");
            json_string(&mut s, &sg.kind);
            write!(s, ",\"nodes\":{},\"jit\":{}}}", sg.nodes, sg.jit).expect("String write");
        }
        write!(s, "],\"compilations\":{}}}", self.compilations).expect("String write");
        s
    }
}

/// Appends `v` as a JSON string literal.
fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("String write");
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let empty = Stats::default();
        assert_eq!(empty.to_json(), r#"{"subgraphs":[],"compilations":0}"#);
        let s = Stats {
            subgraphs: vec![
                SubgraphStats {
                    kind: "elementwise".into(),
                    nodes: 3,
                    jit: true,
                },
                SubgraphStats {
                    kind: "a\"b\\\n\u{1}".into(),
                    nodes: 0,
                    jit: false,
                },
            ],
            compilations: 1,
        };
        assert_eq!(
            s.to_json(),
            r#"{"subgraphs":[{"kind":"elementwise","nodes":3,"jit":true},{"kind":"a\"b\\\n\u0001","nodes":0,"jit":false}],"compilations":1}"#
        );
    }
}
