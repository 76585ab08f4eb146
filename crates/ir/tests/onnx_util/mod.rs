//! A small builder for ONNX models in tests: constructs the prost messages of
//! `snipjit_ir::onnx::proto` and encodes them, the way an exporter would.
#![allow(dead_code)]

use prost::Message;
use snipjit_ir::Graph;
use snipjit_ir::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_type as at, tensor_shape_proto,
    type_proto,
};
use snipjit_ir::onnx::{OnnxError, import_bytes};

pub use snipjit_ir::onnx::proto::data_type::*;

/// A model under construction.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    pub model: ModelProto,
}

/// A tensor type for a value info: dims spelled `"4"` (static), `"N"` (symbol),
/// `"?"` (unknown).
pub fn tensor_type(elem: i32, dims: &[&str]) -> TypeProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: if *d == "?" {
                None
            } else if let Ok(v) = d.parse::<i64>() {
                Some(tensor_shape_proto::dimension::Value::DimValue(v))
            } else {
                Some(tensor_shape_proto::dimension::Value::DimParam(
                    d.to_string(),
                ))
            },
            denotation: String::new(),
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem,
            shape: Some(TensorShapeProto { dim }),
        })),
        denotation: String::new(),
    }
}

impl ModelBuilder {
    /// An empty graph importing the default domain at `opset`.
    pub fn new(opset: i64) -> ModelBuilder {
        ModelBuilder {
            model: ModelProto {
                ir_version: 8,
                opset_import: vec![OperatorSetIdProto {
                    domain: String::new(),
                    version: opset,
                }],
                producer_name: "snipjit-tests".into(),
                graph: Some(GraphProto {
                    name: "test".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    pub fn graph(&mut self) -> &mut GraphProto {
        self.model
            .graph
            .as_mut()
            .expect("builder always has a graph")
    }

    /// Adds a graph input.
    pub fn input(&mut self, name: &str, elem: i32, dims: &[&str]) -> &mut Self {
        let vi = ValueInfoProto {
            name: name.into(),
            r#type: Some(tensor_type(elem, dims)),
            ..Default::default()
        };
        self.graph().input.push(vi);
        self
    }

    /// Adds a graph output without a declared type.
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph().output.push(ValueInfoProto {
            name: name.into(),
            ..Default::default()
        });
        self
    }

    /// Adds a graph output with a declared type.
    pub fn output_typed(&mut self, name: &str, elem: i32, dims: &[&str]) -> &mut Self {
        self.graph().output.push(ValueInfoProto {
            name: name.into(),
            r#type: Some(tensor_type(elem, dims)),
            ..Default::default()
        });
        self
    }

    pub fn initializer(&mut self, t: TensorProto) -> &mut Self {
        self.graph().initializer.push(t);
        self
    }

    /// Adds a node named `name` (may be empty).
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> &mut Self {
        self.graph().node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Encodes and imports the model.
    pub fn import(&self) -> Result<Graph, OnnxError> {
        import_bytes(&self.bytes())
    }
}

pub fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::INT,
        i: v,
        ..Default::default()
    }
}

pub fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::FLOAT,
        f: v,
        ..Default::default()
    }
}

pub fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::FLOATS,
        floats: v.to_vec(),
        ..Default::default()
    }
}

pub fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: at::TENSOR,
        t: Some(t),
        ..Default::default()
    }
}

/// An f32 tensor stored in `float_data`.
pub fn t_f32(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: v.to_vec(),
        ..Default::default()
    }
}

/// An f32 tensor stored little endian in `raw_data`.
pub fn t_f32_raw(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An i64 tensor stored in `int64_data`.
pub fn t_i64(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// A tensor of type `elem` stored in `int32_data`.
pub fn t_int32_field(name: &str, elem: i32, dims: &[i64], v: &[i32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem,
        int32_data: v.to_vec(),
        ..Default::default()
    }
}

/// A tensor of type `elem` with the given raw bytes.
pub fn t_raw(name: &str, elem: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem,
        raw_data: raw,
        ..Default::default()
    }
}

/// Imports and unwraps, printing the error on failure.
pub fn ok(b: &ModelBuilder) -> Graph {
    match b.import() {
        Ok(g) => g,
        Err(e) => panic!("import failed: {e}"),
    }
}

/// Imports, expecting an error, and returns its message.
pub fn err(b: &ModelBuilder) -> String {
    match b.import() {
        Ok(g) => panic!("import unexpectedly succeeded: {g:#?}"),
        Err(e) => e.to_string(),
    }
}

/// The op of the node producing graph output `name`.
pub fn producer<'g>(g: &'g Graph, name: &str) -> &'g snipjit_ir::Node {
    let v = g
        .find_value(name)
        .unwrap_or_else(|| panic!("no value '{name}'"));
    g.node(v.node)
}
