//! Builds a [`Graph`] from a decoded [`ModelProto`].
//!
//! Order of work: check the opset, turn initializers into Constant nodes and graph
//! inputs into Parameters, sort the ONNX nodes topologically (exporters already do, but
//! the spec does not make readers rely on it), import each node with its output types
//! inferred on the spot, add a Result per graph output, and run the verifier.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use half::{bf16, f16};

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    attribute_type as at, data_location, data_type as dt, tensor_shape_proto::dimension,
    type_proto,
};
use super::{MAX_DIM, MAX_OPSET, MIN_OPSET, OnnxError};
use crate::{
    BinaryOp, DType, Dim, GeluApprox, Graph, IrError, Node, Op, Output, ReduceKind, Shape, Tensor,
    TensorData, TensorType, UnaryOp, ValueRef,
};

/// Maps an ONNX element type code to a [`DType`].
fn dtype_from_onnx(code: i32) -> Result<DType, String> {
    Ok(match code {
        dt::FLOAT => DType::F32,
        dt::UINT8 => DType::U8,
        dt::INT8 => DType::I8,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        dt::BFLOAT16 => DType::BF16,
        dt::DOUBLE => {
            return Err(
                "element type DOUBLE (f64) is not supported; convert the model to float32".into(),
            );
        }
        c => {
            return Err(format!(
                "element type {} ({c}) is not supported",
                super::proto::data_type::name(c)
            ));
        }
    })
}

/// Converts an ONNX dim size to a static dim, refusing negative and huge sizes.
fn static_dim(v: i64) -> Result<usize, String> {
    match usize::try_from(v) {
        Ok(d) if d <= MAX_DIM => Ok(d),
        Ok(d) => Err(format!("dim {d} exceeds the supported maximum {MAX_DIM}")),
        Err(_) => Err(format!("negative dim {v}")),
    }
}

/// Decodes a `TensorProto` (initializer or constant) into a [`Tensor`].
///
/// Reads `raw_data` (little endian) or the typed field the spec assigns to the dtype
/// (`float_data`; `int32_data` for i32, i8, u8, bool, f16 and bf16; `int64_data`). The
/// element count must match the dims exactly; external data and f64 are refused.
pub fn decode_tensor(t: &TensorProto) -> Result<Tensor, OnnxError> {
    let name = if t.name.is_empty() {
        "<unnamed>".to_string()
    } else {
        t.name.clone()
    };
    let bad = |reason: String| OnnxError::BadTensor {
        name: name.clone(),
        reason,
    };
    if t.data_location == data_location::EXTERNAL || !t.external_data.is_empty() {
        return Err(bad(
            "external data is not supported (the model must embed its tensors)".into(),
        ));
    }
    if t.segment.is_some() {
        return Err(bad("segmented tensors are not supported".into()));
    }
    let dtype = dtype_from_onnx(t.data_type).map_err(&bad)?;
    let mut shape = Vec::with_capacity(t.dims.len().min(64));
    for &d in &t.dims {
        shape.push(static_dim(d).map_err(&bad)?);
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("element count of dims {:?} overflows", t.dims)))?;
    let typed_len = t.float_data.len()
        + t.int32_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len()
        + t.string_data.len();
    let data = if !t.raw_data.is_empty() {
        if typed_len != 0 {
            return Err(bad("both raw_data and a typed data field are set".into()));
        }
        decode_raw(dtype, &t.raw_data, numel).map_err(&bad)?
    } else {
        decode_typed(dtype, t, numel).map_err(&bad)?
    };
    Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
}

fn decode_raw(dtype: DType, raw: &[u8], numel: usize) -> Result<TensorData, String> {
    let want = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| "byte size overflows".to_string())?;
    if raw.len() != want {
        return Err(format!(
            "raw_data holds {} bytes, dims need {want} ({numel} x {dtype})",
            raw.len()
        ));
    }
    fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect()
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(chunks(raw, f32::from_le_bytes)),
        DType::F16 => TensorData::F16(chunks(raw, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DType::BF16 => TensorData::BF16(chunks(raw, |b| bf16::from_bits(u16::from_le_bytes(b)))),
        DType::I32 => TensorData::I32(chunks(raw, i32::from_le_bytes)),
        DType::I64 => TensorData::I64(chunks(raw, i64::from_le_bytes)),
        DType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DType::U8 => TensorData::U8(raw.to_vec()),
        DType::Bool => TensorData::Bool(
            raw.iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    v => Err(format!("bool element has byte value {v}")),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn decode_typed(dtype: DType, t: &TensorProto, numel: usize) -> Result<TensorData, String> {
    let (field, len) = match dtype {
        DType::F32 => ("float_data", t.float_data.len()),
        DType::I64 => ("int64_data", t.int64_data.len()),
        _ => ("int32_data", t.int32_data.len()),
    };
    if len != numel {
        return Err(format!(
            "{field} holds {len} elements, dims {:?} need {numel}",
            t.dims
        ));
    }
    let ints = |lo: i64, hi: i64| -> Result<(), String> {
        match t
            .int32_data
            .iter()
            .find(|&&v| !(lo..=hi).contains(&(v as i64)))
        {
            Some(v) => Err(format!("int32_data value {v} is out of range for {dtype}")),
            None => Ok(()),
        }
    };
    Ok(match dtype {
        DType::F32 => TensorData::F32(t.float_data.clone()),
        DType::I64 => TensorData::I64(t.int64_data.clone()),
        DType::I32 => TensorData::I32(t.int32_data.clone()),
        DType::I8 => {
            ints(-128, 127)?;
            TensorData::I8(t.int32_data.iter().map(|&v| v as i8).collect())
        }
        DType::U8 => {
            ints(0, 255)?;
            TensorData::U8(t.int32_data.iter().map(|&v| v as u8).collect())
        }
        DType::Bool => {
            ints(0, 1)?;
            TensorData::Bool(t.int32_data.iter().map(|&v| v != 0).collect())
        }
        // 16-bit floats are stored as their bit pattern, zero- (or sign-) extended.
        DType::F16 => {
            ints(-32768, 65535)?;
            TensorData::F16(
                t.int32_data
                    .iter()
                    .map(|&v| f16::from_bits(v as u16))
                    .collect(),
            )
        }
        DType::BF16 => {
            ints(-32768, 65535)?;
            TensorData::BF16(
                t.int32_data
                    .iter()
                    .map(|&v| bf16::from_bits(v as u16))
                    .collect(),
            )
        }
    })
}

/// A 0-d tensor of `dtype` holding `v` (cast like a C cast for integer dtypes).
fn scalar_tensor(dtype: DType, v: f64) -> Tensor {
    let data = match dtype {
        DType::F32 => TensorData::F32(vec![v as f32]),
        DType::F16 => TensorData::F16(vec![f16::from_f64(v)]),
        DType::BF16 => TensorData::BF16(vec![bf16::from_f64(v)]),
        DType::I8 => TensorData::I8(vec![v as i8]),
        DType::U8 => TensorData::U8(vec![v as u8]),
        DType::I32 => TensorData::I32(vec![v as i32]),
        DType::I64 => TensorData::I64(vec![v as i64]),
        DType::Bool => TensorData::Bool(vec![v != 0.0]),
    };
    Tensor {
        shape: vec![],
        data,
    }
}

/// The declared type of a graph input or output.
fn value_info_type(vi: &ValueInfoProto) -> Result<TensorType, OnnxError> {
    let bad = |reason: String| OnnxError::BadValueInfo {
        name: vi.name.clone(),
        reason,
    };
    let tp = vi
        .r#type
        .as_ref()
        .ok_or_else(|| bad("has no type".into()))?;
    let Some(type_proto::Value::TensorType(tt)) = &tp.value else {
        return Err(bad(
            "is not a tensor (sequence, map, optional and sparse types are not supported)".into(),
        ));
    };
    let dtype = dtype_from_onnx(tt.elem_type).map_err(&bad)?;
    let shape = tt
        .shape
        .as_ref()
        .ok_or_else(|| bad("has no shape (tensors of unknown rank are not supported)".into()))?;
    let mut dims = Shape::default();
    for d in &shape.dim {
        dims.0.push(match &d.value {
            Some(dimension::Value::DimValue(v)) => Dim::Static(static_dim(*v).map_err(&bad)?),
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Dynamic(Some(p.clone())),
            _ => Dim::Dynamic(None),
        });
    }
    Ok(TensorType::new(dtype, dims))
}

/// The ONNX node being imported, with attribute accessors whose errors name it.
struct Ctx<'a> {
    node: &'a NodeProto,
    /// The node's name, or its first output's name if it has none.
    name: String,
    op_type: &'a str,
}

impl<'a> Ctx<'a> {
    fn new(node: &'a NodeProto, index: usize) -> Ctx<'a> {
        let name = if !node.name.is_empty() {
            node.name.clone()
        } else if let Some(o) = node.output.iter().find(|o| !o.is_empty()) {
            o.clone()
        } else {
            format!("{}#{index}", node.op_type)
        };
        Ctx {
            node,
            name,
            op_type: &node.op_type,
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            node: self.name.clone(),
            op_type: self.op_type.to_string(),
            reason: reason.into(),
        }
    }

    fn bad_attr(&self, attr: &str, reason: impl Into<String>) -> OnnxError {
        OnnxError::BadAttribute {
            node: self.name.clone(),
            op_type: self.op_type.to_string(),
            attr: attr.to_string(),
            reason: reason.into(),
        }
    }

    fn attr(
        &self,
        name: &str,
        ty: i32,
        ty_name: &str,
    ) -> Result<Option<&'a AttributeProto>, OnnxError> {
        let Some(a) = self.node.attribute.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(self.bad_attr(
                name,
                "attribute references (ref_attr_name) are not supported",
            ));
        }
        // UNDEFINED: writers before IR version 2 did not set the type.
        if a.r#type != ty && a.r#type != at::UNDEFINED {
            return Err(self.bad_attr(
                name,
                format!("expected type {ty_name}, got type code {}", a.r#type),
            ));
        }
        Ok(Some(a))
    }

    fn int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        Ok(self.attr(name, at::INT, "INT")?.map(|a| a.i))
    }

    fn int_or(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A 0/1 flag attribute.
    fn flag(&self, name: &str, default: bool) -> Result<bool, OnnxError> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.bad_attr(name, format!("expected 0 or 1, got {v}"))),
        }
    }

    fn float_or(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self
            .attr(name, at::FLOAT, "FLOAT")?
            .map_or(default, |a| a.f))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.attr(name, at::INTS, "INTS")?.map(|a| a.ints.clone()))
    }

    fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.attr(name, at::STRING, "STRING")? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.bad_attr(name, "not valid UTF-8")),
        }
    }

    /// Fails if the node lists fewer than `min` or more than `max` inputs.
    fn arity(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.node.input.len();
        if n < min || n > max {
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.unsupported(format!("expects {want} inputs, got {n}")));
        }
        Ok(())
    }
}

/// Import state: the graph being built and the ONNX name of every value so far.
pub(super) struct Importer {
    g: Graph,
    opset: i64,
    /// ONNX value name -> IR value.
    values: HashMap<String, ValueRef>,
    /// Every value name used in the IR graph or defined by the model (so the names of
    /// helper values never collide with a model name).
    taken: HashSet<String>,
    /// ONNX outputs that are not imported (Dropout's mask), with the reason.
    unavailable: HashMap<String, String>,
}

impl Importer {
    pub(super) fn run(model: &ModelProto) -> Result<Graph, OnnxError> {
        let opset = default_opset(model)?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| OnnxError::Model("model has no graph".into()))?;
        let mut imp = Importer {
            g: Graph::new(graph.name.clone()),
            opset,
            values: HashMap::new(),
            taken: HashSet::new(),
            unavailable: HashMap::new(),
        };
        imp.import_graph(graph)?;
        crate::verify(&imp.g)?;
        Ok(imp.g)
    }

    fn import_graph(&mut self, graph: &GraphProto) -> Result<(), OnnxError> {
        if let Some(s) = graph.sparse_initializer.first() {
            let name = s.values.as_ref().map_or("<unnamed>", |v| v.name.as_str());
            return Err(OnnxError::BadTensor {
                name: name.to_string(),
                reason: "sparse initializers are not supported".into(),
            });
        }
        for name in graph
            .input
            .iter()
            .map(|v| &v.name)
            .chain(graph.initializer.iter().map(|t| &t.name))
            .chain(graph.node.iter().flat_map(|n| &n.output))
        {
            self.taken.insert(name.clone());
        }

        for t in &graph.initializer {
            if t.name.is_empty() {
                return Err(OnnxError::Model("an initializer has no name".into()));
            }
            let tensor = decode_tensor(t)?;
            self.define_value(&t.name)?;
            let v = self.push(&t.name, t.name.clone(), Op::Constant(tensor), &[])?;
            self.values.insert(t.name.clone(), v);
        }
        for vi in &graph.input {
            if vi.name.is_empty() {
                return Err(OnnxError::Model("a graph input has no name".into()));
            }
            if self.values.contains_key(&vi.name) {
                // An input with an initializer is a constant (IR version >= 4 semantics
                // for a model run without overriding it).
                if graph.initializer.iter().any(|t| t.name == vi.name) {
                    continue;
                }
                return Err(OnnxError::Model(format!(
                    "graph input '{}' is listed twice",
                    vi.name
                )));
            }
            let ty = value_info_type(vi)?;
            let v = self.g.add_input(vi.name.clone(), ty);
            self.values.insert(vi.name.clone(), v);
        }

        let defined: HashSet<&str> = self.values.keys().map(String::as_str).collect();
        let order = topo_order(&graph.node, &defined)?;
        for i in order {
            self.import_node(&graph.node[i], i)?;
        }

        for vi in &graph.output {
            let v = self.lookup(&vi.name, None)?;
            let ty = self.g.value_type(v);
            if let Some(tp) = &vi.r#type
                && let Some(type_proto::Value::TensorType(tt)) = &tp.value
            {
                if tt.elem_type != dt::UNDEFINED {
                    let declared = dtype_from_onnx(tt.elem_type).map_err(|reason| {
                        OnnxError::BadValueInfo {
                            name: vi.name.clone(),
                            reason,
                        }
                    })?;
                    if declared != ty.dtype {
                        return Err(OnnxError::BadValueInfo {
                            name: vi.name.clone(),
                            reason: format!(
                                "declared element type {declared}, imported graph computes {ty}"
                            ),
                        });
                    }
                }
                if let Some(s) = &tt.shape
                    && s.dim.len() != ty.shape.rank()
                {
                    return Err(OnnxError::BadValueInfo {
                        name: vi.name.clone(),
                        reason: format!(
                            "declared rank {}, imported graph computes {ty}",
                            s.dim.len()
                        ),
                    });
                }
            }
            self.g.add_output(vi.name.clone(), v);
        }
        Ok(())
    }

    /// Fails if `name` already names a value.
    fn define_value(&self, name: &str) -> Result<(), OnnxError> {
        if self.values.contains_key(name) {
            return Err(OnnxError::Model(format!("value '{name}' is defined twice")));
        }
        Ok(())
    }

    /// The IR value of ONNX value `name`, read by `reader` (None: a graph output).
    fn lookup(&self, name: &str, reader: Option<&Ctx>) -> Result<ValueRef, OnnxError> {
        if let Some(&v) = self.values.get(name) {
            return Ok(v);
        }
        match (self.unavailable.get(name), reader) {
            (Some(why), Some(c)) => Err(c.unsupported(format!("reads '{name}', which {why}"))),
            (Some(why), None) => Err(OnnxError::BadValueInfo {
                name: name.to_string(),
                reason: format!("graph output {why}"),
            }),
            (None, Some(c)) => Err(OnnxError::MissingInput {
                node: c.name.clone(),
                op_type: c.op_type.to_string(),
                input: name.to_string(),
            }),
            (None, None) => Err(OnnxError::Model(format!(
                "graph output '{name}' is not defined by any node, input or initializer"
            ))),
        }
    }

    /// A name not used by any value so far, based on `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// Adds a one-output node with its type inferred.
    fn push(
        &mut self,
        node_name: &str,
        value: String,
        op: Op,
        inputs: &[ValueRef],
    ) -> Result<ValueRef, OnnxError> {
        let node_err = |op: &Op, reason: String| {
            OnnxError::Ir(IrError::Node {
                node: node_name.to_string(),
                op: op.name().to_string(),
                reason,
            })
        };
        let tys = crate::infer::infer_op(&self.g, &op, inputs).map_err(|r| node_err(&op, r))?;
        let [ty] = <[TensorType; 1]>::try_from(tys)
            .map_err(|t| node_err(&op, format!("op has {} outputs, expected 1", t.len())))?;
        if let Some(d) = ty
            .shape
            .dims()
            .iter()
            .find_map(|d| d.as_static().filter(|&d| d > MAX_DIM))
        {
            return Err(node_err(
                &op,
                format!("dim {d} exceeds the supported maximum {MAX_DIM}"),
            ));
        }
        self.taken.insert(value.clone());
        let id = self.g.add_node(Node {
            name: node_name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: vec![Output { name: value, ty }],
        });
        Ok(ValueRef::new(id, 0))
    }

    /// Adds a helper node of ONNX node `c` (a step of a decomposition).
    fn helper(
        &mut self,
        c: &Ctx,
        suffix: &str,
        op: Op,
        inputs: &[ValueRef],
    ) -> Result<ValueRef, OnnxError> {
        let value = self.fresh(&format!("{}/{suffix}", c.node.output[0]));
        self.push(&format!("{}/{suffix}", c.name), value, op, inputs)
    }

    /// Adds a scalar Constant helper of `dtype` holding `v`.
    fn scalar(
        &mut self,
        c: &Ctx,
        suffix: &str,
        dtype: DType,
        v: f64,
    ) -> Result<ValueRef, OnnxError> {
        self.helper(c, suffix, Op::Constant(scalar_tensor(dtype, v)), &[])
    }

    /// Adds the node defining the ONNX node's first output.
    fn finish(&mut self, c: &Ctx, op: Op, inputs: &[ValueRef]) -> Result<(), OnnxError> {
        let out = c.node.output[0].clone();
        let v = self.push(&c.name, out.clone(), op, inputs)?;
        self.values.insert(out, v);
        Ok(())
    }

    /// Required input `i`.
    fn input(&self, c: &Ctx, i: usize) -> Result<ValueRef, OnnxError> {
        match c.node.input.get(i).filter(|n| !n.is_empty()) {
            Some(name) => self.lookup(name, Some(c)),
            None => Err(OnnxError::MissingInput {
                node: c.name.clone(),
                op_type: c.op_type.to_string(),
                input: format!("#{i}"),
            }),
        }
    }

    /// Optional input `i` (absent or named `""`).
    fn opt_input(&self, c: &Ctx, i: usize) -> Result<Option<ValueRef>, OnnxError> {
        match c.node.input.get(i).filter(|n| !n.is_empty()) {
            Some(name) => self.lookup(name, Some(c)).map(Some),
            None => Ok(None),
        }
    }

    /// The tensor of a value defined by a Constant node.
    fn constant(&self, v: ValueRef) -> Option<&Tensor> {
        match &self.g.node(v.node).op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }

    /// Input `i` as constant integers (axes), refusing a computed value.
    fn const_ints(&self, c: &Ctx, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        let Some(v) = self.opt_input(c, i)? else {
            return Ok(None);
        };
        match self.constant(v) {
            Some(t) if t.dtype().is_int() && t.shape.len() <= 1 => Ok(Some(t.to_i64_vec())),
            Some(t) => Err(c.unsupported(format!(
                "{what} must be a 1-D integer tensor, got {}",
                t.ty()
            ))),
            None => Err(c.unsupported(format!(
                "{what} ('{}') must be a constant (initializer or Constant node)",
                c.node.input[i]
            ))),
        }
    }

    fn import_node(&mut self, node: &NodeProto, index: usize) -> Result<(), OnnxError> {
        let c = Ctx::new(node, index);
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                node: c.name.clone(),
            });
        }
        if node.output.first().is_none_or(String::is_empty) {
            return Err(c.unsupported("the node has no (named) first output"));
        }
        let produced = self.import_op(&c)?;
        for out in node.output.iter().skip(produced).filter(|o| !o.is_empty()) {
            self.unavailable.insert(
                out.clone(),
                format!(
                    "is an output of {} node '{}' that snipjit does not import",
                    c.op_type, c.name
                ),
            );
        }
        Ok(())
    }

    /// Imports one node; returns how many of its outputs it defined.
    fn import_op(&mut self, c: &Ctx) -> Result<usize, OnnxError> {
        let unary = |u: UnaryOp| Some(Op::Unary(u));
        let simple = match c.op_type {
            "Abs" => unary(UnaryOp::Abs),
            "Neg" => unary(UnaryOp::Neg),
            "Relu" => unary(UnaryOp::Relu),
            "Exp" => unary(UnaryOp::Exp),
            "Log" => unary(UnaryOp::Log),
            "Sqrt" => unary(UnaryOp::Sqrt),
            "Reciprocal" => unary(UnaryOp::Reciprocal),
            "Erf" => unary(UnaryOp::Erf),
            "Tanh" => unary(UnaryOp::Tanh),
            "Sigmoid" => unary(UnaryOp::Sigmoid),
            "HardSwish" => unary(UnaryOp::HSwish),
            "Mish" => unary(UnaryOp::Mish),
            "Softplus" => unary(UnaryOp::Softplus),
            "Floor" => unary(UnaryOp::Floor),
            "Ceil" => unary(UnaryOp::Ceil),
            "Round" => unary(UnaryOp::Round),
            "Sign" => unary(UnaryOp::Sign),
            "Not" => unary(UnaryOp::Not),
            "Elu" => unary(UnaryOp::Elu {
                alpha: c.float_or("alpha", 1.0)?,
            }),
            "LeakyRelu" => unary(UnaryOp::LeakyRelu {
                alpha: c.float_or("alpha", 0.01)?,
            }),
            // Gelu joined the default domain in opset 20; it is accepted at any opset.
            "Gelu" => {
                let approx = match c.string("approximate")?.as_deref() {
                    None | Some("none") => GeluApprox::Erf,
                    Some("tanh") => GeluApprox::Tanh,
                    Some(s) => {
                        return Err(c.bad_attr(
                            "approximate",
                            format!("expected \"none\" or \"tanh\", got \"{s}\""),
                        ));
                    }
                };
                unary(UnaryOp::Gelu(approx))
            }
            "Identity" => Some(Op::Identity),
            "Softmax" => Some(Op::Softmax {
                axis: c.int_or("axis", -1)?,
            }),
            "MatMul" => Some(Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            }),
            "Reshape" => Some(Op::Reshape {
                allow_zero: c.flag("allowzero", false)?,
            }),
            "Expand" => Some(Op::Broadcast),
            "Where" => Some(Op::Select),
            "Gather" => Some(Op::Gather {
                axis: c.int_or("axis", 0)?,
            }),
            "Cast" => {
                let to = c.int("to")?.ok_or_else(|| c.bad_attr("to", "required"))?;
                let to = i32::try_from(to)
                    .map_err(|_| format!("invalid element type code {to}"))
                    .and_then(dtype_from_onnx)
                    .map_err(|r| c.bad_attr("to", r))?;
                Some(Op::Convert { to })
            }
            _ => None,
        };
        if let Some(op) = simple {
            let n = op.arity().expect("simple ops have a fixed arity");
            c.arity(n, n)?;
            let inputs = (0..n)
                .map(|i| self.input(c, i))
                .collect::<Result<Vec<_>, _>>()?;
            self.finish(c, op, &inputs)?;
            return Ok(1);
        }
        if let Some(b) = binary_op(c.op_type) {
            c.arity(2, 2)?;
            let a = self.input(c, 0)?;
            let mut b_in = self.input(c, 1)?;
            let (ta, tb) = (self.g.value_type(a).dtype, self.g.value_type(b_in).dtype);
            if b == BinaryOp::Pow && ta != tb {
                // ONNX Pow allows a different exponent type; the IR wants one dtype.
                b_in = self.helper(c, "exponent", Op::Convert { to: ta }, &[b_in])?;
            }
            self.finish(c, Op::Binary(b), &[a, b_in])?;
            return Ok(1);
        }
        match c.op_type {
            "Max" | "Min" | "Sum" | "Mean" => self.variadic(c)?,
            "Mod" => {
                c.arity(2, 2)?;
                if !c.flag("fmod", false)? {
                    return Err(c.unsupported(
                        "Mod with fmod=0 (integer floor modulo) is not supported; only fmod=1 (C fmod) is",
                    ));
                }
                let (a, b) = (self.input(c, 0)?, self.input(c, 1)?);
                self.finish(c, Op::Binary(BinaryOp::Mod), &[a, b])?;
            }
            "Clip" => {
                c.arity(1, 3)?;
                let x = self.input(c, 0)?;
                let bound = |i: usize, default: f32| -> Result<f32, OnnxError> {
                    let Some(v) = self.opt_input(c, i)? else {
                        return Ok(default);
                    };
                    match self.constant(v).and_then(Tensor::scalar_value) {
                        Some(s) => Ok(s as f32),
                        None => Err(c.unsupported(format!(
                            "Clip bound '{}' must be a constant with one element",
                            c.node.input[i]
                        ))),
                    }
                };
                let min = bound(1, f32::NEG_INFINITY)?;
                let max = bound(2, f32::INFINITY)?;
                self.finish(c, Op::Unary(UnaryOp::Clamp { min, max }), &[x])?;
            }
            "HardSigmoid" => {
                c.arity(1, 1)?;
                let x = self.input(c, 0)?;
                let alpha = c.float_or("alpha", 0.2)?;
                let beta = c.float_or("beta", 0.5)?;
                if alpha == 1.0 / 6.0 && beta == 0.5 {
                    self.finish(c, Op::Unary(UnaryOp::HSigmoid), &[x])?;
                } else {
                    // max(0, min(1, alpha * x + beta))
                    let dtype = self.g.value_type(x).dtype;
                    let a = self.scalar(c, "alpha", dtype, alpha as f64)?;
                    let b = self.scalar(c, "beta", dtype, beta as f64)?;
                    let ax = self.helper(c, "mul", Op::Binary(BinaryOp::Mul), &[x, a])?;
                    let axb = self.helper(c, "add", Op::Binary(BinaryOp::Add), &[ax, b])?;
                    self.finish(c, Op::Unary(UnaryOp::Clamp { min: 0.0, max: 1.0 }), &[axb])?;
                }
            }
            "CastLike" => {
                c.arity(2, 2)?;
                let x = self.input(c, 0)?;
                let like = self.input(c, 1)?;
                let to = self.g.value_type(like).dtype;
                self.finish(c, Op::Convert { to }, &[x])?;
            }
            "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceMean" | "ReduceProd" => {
                self.reduce(c)?
            }
            "Gemm" => self.gemm(c)?,
            "Transpose" => {
                c.arity(1, 1)?;
                let x = self.input(c, 0)?;
                let rank = self.g.value_type(x).shape.rank();
                let perm = match c.ints("perm")? {
                    None => (0..rank).rev().collect(),
                    Some(p) => p
                        .iter()
                        .map(|&a| {
                            usize::try_from(a)
                                .map_err(|_| c.bad_attr("perm", format!("negative entry {a}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                };
                self.finish(c, Op::Transpose { perm }, &[x])?;
            }
            "Unsqueeze" => {
                c.arity(2, 2)?;
                let x = self.input(c, 0)?;
                let axes = match self.const_ints(c, 1, "axes")? {
                    Some(a) => a,
                    None => {
                        return Err(self
                            .input(c, 1)
                            .err()
                            .unwrap_or_else(|| c.unsupported("axes input is absent")));
                    }
                };
                self.finish(c, Op::Unsqueeze { axes }, &[x])?;
            }
            "Squeeze" => {
                c.arity(1, 2)?;
                let x = self.input(c, 0)?;
                let axes = match self.const_ints(c, 1, "axes")? {
                    Some(a) => a,
                    None => {
                        let shape = &self.g.value_type(x).shape;
                        if !shape.is_static() {
                            return Err(c.unsupported(format!(
                                "Squeeze without axes on input of shape {shape} (with dynamic dims) is ambiguous"
                            )));
                        }
                        vec![]
                    }
                };
                self.finish(c, Op::Squeeze { axes }, &[x])?;
            }
            "Concat" => {
                c.arity(1, usize::MAX)?;
                let axis = c
                    .int("axis")?
                    .ok_or_else(|| c.bad_attr("axis", "required"))?;
                let inputs = (0..c.node.input.len())
                    .map(|i| self.input(c, i))
                    .collect::<Result<Vec<_>, _>>()?;
                self.finish(c, Op::Concat { axis }, &inputs)?;
            }
            "Shape" => {
                c.arity(1, 1)?;
                let x = self.input(c, 0)?;
                let rank = self.g.value_type(x).shape.rank() as i64;
                let clampn = |v: i64| {
                    if v < 0 {
                        (v + rank).max(0)
                    } else {
                        v.min(rank)
                    }
                };
                let start = clampn(c.int_or("start", 0)?);
                let end = c.int("end")?.map_or(rank, clampn);
                if start != 0 || end != rank {
                    return Err(c.unsupported(format!(
                        "Shape with start/end (a slice {start}..{end} of rank {rank}) is not supported"
                    )));
                }
                self.finish(c, Op::ShapeOf, &[x])?;
            }
            "Dropout" => {
                c.arity(1, 3)?;
                let x = self.input(c, 0)?;
                if let Some(tm) = self.opt_input(c, 2)? {
                    let off = self.constant(tm).and_then(Tensor::scalar_value) == Some(0.0);
                    if !off {
                        return Err(
                            c.unsupported("training_mode must be a constant false for inference")
                        );
                    }
                }
                self.finish(c, Op::Identity, &[x])?;
            }
            "Constant" => {
                c.arity(0, 0)?;
                let t = self.constant_value(c)?;
                self.finish(c, Op::Constant(t), &[])?;
            }
            _ => {
                return Err(OnnxError::UnsupportedOp {
                    op_type: c.op_type.to_string(),
                    domain: c.node.domain.clone(),
                    node: c.name.clone(),
                });
            }
        }
        Ok(1)
    }

    /// Max, Min, Sum, Mean: a left-to-right chain of binary ops (Mean then divides).
    fn variadic(&mut self, c: &Ctx) -> Result<(), OnnxError> {
        c.arity(1, usize::MAX)?;
        let op = match c.op_type {
            "Max" => BinaryOp::Max,
            "Min" => BinaryOp::Min,
            _ => BinaryOp::Add,
        };
        let inputs = (0..c.node.input.len())
            .map(|i| self.input(c, i))
            .collect::<Result<Vec<_>, _>>()?;
        let n = inputs.len();
        let mean = c.op_type == "Mean";
        if n == 1 && !mean {
            return self.finish(c, Op::Identity, &inputs);
        }
        let mut acc = inputs[0];
        for (k, &x) in inputs.iter().enumerate().skip(1) {
            if k + 1 == n && !mean {
                return self.finish(c, Op::Binary(op), &[acc, x]);
            }
            acc = self.helper(c, &format!("acc{k}"), Op::Binary(op), &[acc, x])?;
        }
        let dtype = self.g.value_type(acc).dtype;
        let count = self.scalar(c, "count", dtype, n as f64)?;
        self.finish(c, Op::Binary(BinaryOp::Div), &[acc, count])
    }

    fn reduce(&mut self, c: &Ctx) -> Result<(), OnnxError> {
        let kind = match c.op_type {
            "ReduceMax" => ReduceKind::Max,
            "ReduceMin" => ReduceKind::Min,
            "ReduceSum" => ReduceKind::Sum,
            "ReduceMean" => ReduceKind::Mean,
            _ => ReduceKind::Prod,
        };
        let axes_as_input = kind == ReduceKind::Sum || self.opset >= 18;
        let keep_dims = c.flag("keepdims", true)?;
        let noop = c.flag("noop_with_empty_axes", false)?;
        let x;
        let axes = if axes_as_input {
            c.arity(1, 2)?;
            x = self.input(c, 0)?;
            if c.node.attribute.iter().any(|a| a.name == "axes") {
                return Err(c.bad_attr(
                    "axes",
                    format!(
                        "{} takes axes as an input at opset {}",
                        c.op_type, self.opset
                    ),
                ));
            }
            self.const_ints(c, 1, "axes")?.unwrap_or_default()
        } else {
            c.arity(1, 1)?;
            x = self.input(c, 0)?;
            c.ints("axes")?.unwrap_or_default()
        };
        if axes.is_empty() && noop {
            return self.finish(c, Op::Identity, &[x]);
        }
        self.finish(
            c,
            Op::Reduce {
                kind,
                axes,
                keep_dims,
            },
            &[x],
        )
    }

    /// `Y = alpha * A' B' + beta * C`.
    fn gemm(&mut self, c: &Ctx) -> Result<(), OnnxError> {
        c.arity(2, 3)?;
        let a = self.input(c, 0)?;
        let b = self.input(c, 1)?;
        let bias = self.opt_input(c, 2)?;
        for (v, what) in [(a, "A"), (b, "B")] {
            let ty = self.g.value_type(v);
            if ty.shape.rank() != 2 {
                return Err(c.unsupported(format!("Gemm input {what} must be 2-D, got {ty}")));
            }
        }
        let transpose_a = c.flag("transA", false)?;
        let transpose_b = c.flag("transB", false)?;
        let alpha = c.float_or("alpha", 1.0)?;
        let beta = c.float_or("beta", 1.0)?;
        let bias = bias.filter(|_| beta != 0.0);
        let dtype = self.g.value_type(a).dtype;
        let mm = Op::MatMul {
            transpose_a,
            transpose_b,
        };
        if alpha == 1.0 && bias.is_none() {
            return self.finish(c, mm, &[a, b]);
        }
        let mut y = self.helper(c, "matmul", mm, &[a, b])?;
        if alpha != 1.0 {
            let s = self.scalar(c, "alpha", dtype, alpha as f64)?;
            let Some(_) = bias else {
                return self.finish(c, Op::Binary(BinaryOp::Mul), &[y, s]);
            };
            y = self.helper(c, "scaled", Op::Binary(BinaryOp::Mul), &[y, s])?;
        }
        let mut bias = bias.expect("alpha == 1 without bias returned above");
        if beta != 1.0 {
            let s = self.scalar(c, "beta", dtype, beta as f64)?;
            bias = self.helper(c, "bias", Op::Binary(BinaryOp::Mul), &[bias, s])?;
        }
        self.finish(c, Op::Binary(BinaryOp::Add), &[y, bias])
    }

    /// The tensor a Constant node defines.
    fn constant_value(&self, c: &Ctx) -> Result<Tensor, OnnxError> {
        let present: Vec<&str> = c.node.attribute.iter().map(|a| a.name.as_str()).collect();
        if present.len() != 1 {
            return Err(c.unsupported(format!(
                "a Constant needs exactly one value attribute, got {present:?}"
            )));
        }
        Ok(match present[0] {
            "value" => {
                let a = c
                    .attr("value", at::TENSOR, "TENSOR")?
                    .expect("listed above");
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| c.bad_attr("value", "no tensor"))?;
                decode_tensor(t)?
            }
            "value_float" => Tensor::scalar_f32(c.float_or("value_float", 0.0)?),
            "value_int" => Tensor {
                shape: vec![],
                data: TensorData::I64(vec![c.int_or("value_int", 0)?]),
            },
            "value_floats" => {
                let v = c
                    .attr("value_floats", at::FLOATS, "FLOATS")?
                    .expect("listed above")
                    .floats
                    .clone();
                Tensor {
                    shape: vec![v.len()],
                    data: TensorData::F32(v),
                }
            }
            "value_ints" => {
                let v = c.ints("value_ints")?.expect("listed above");
                Tensor {
                    shape: vec![v.len()],
                    data: TensorData::I64(v),
                }
            }
            other => {
                return Err(c.bad_attr(
                    other,
                    "Constant values of this kind (sparse or string) are not supported",
                ));
            }
        })
    }
}

/// The IR binary op of a two-input ONNX op.
fn binary_op(op_type: &str) -> Option<BinaryOp> {
    Some(match op_type {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "PRelu" => BinaryOp::PRelu,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        _ => return None,
    })
}

/// The version of the default domain the model imports.
fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let mut version = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            if version.is_some_and(|v| v != o.version) {
                return Err(OnnxError::Model(format!(
                    "the default domain is imported twice, at versions {} and {}",
                    version.unwrap_or_default(),
                    o.version
                )));
            }
            version = Some(o.version);
        }
    }
    let version =
        version.ok_or_else(|| OnnxError::Model("model imports no default-domain opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
        return Err(OnnxError::Opset { version });
    }
    Ok(version)
}

/// An order of `nodes` in which each node comes after the producers of its inputs;
/// ties keep file order. `defined` holds the values available before any node.
fn topo_order(nodes: &[NodeProto], defined: &HashSet<&str>) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if defined.contains(o.as_str()) || producer.insert(o, i).is_some() {
                return Err(OnnxError::Model(format!("value '{o}' is defined twice")));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for name in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(name.as_str()) {
                pending[i] += 1;
                users[p].push(i);
            } else if !defined.contains(name.as_str()) {
                return Err(OnnxError::MissingInput {
                    node: Ctx::new(n, i).name,
                    op_type: n.op_type.clone(),
                    input: name.clone(),
                });
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| pending[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len())
            .find(|&i| pending[i] > 0)
            .expect("some node is left");
        return Err(OnnxError::Model(format!(
            "the graph has a cycle through node '{}'",
            Ctx::new(&nodes[stuck], stuck).name
        )));
    }
    Ok(order)
}
