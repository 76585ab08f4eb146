//! Shapes whose dims are static or dynamic, and numpy broadcasting over them.

use std::fmt;

use smallvec::SmallVec;

use crate::DType;

/// One dimension: a known size, or a size known only at run time.
///
/// A dynamic dim may carry a symbol (`N`, `S`...). Two dynamic dims with the same
/// symbol are equal at run time; an anonymous one (`?`) equals nothing but itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Static(usize),
    Dynamic(Option<String>),
}

impl Dim {
    /// The size, when static.
    pub fn as_static(&self) -> Option<usize> {
        match self {
            Dim::Static(n) => Some(*n),
            Dim::Dynamic(_) => None,
        }
    }

    /// A dynamic dim named `name`.
    pub fn sym(name: &str) -> Dim {
        Dim::Dynamic(Some(name.to_string()))
    }

    /// True if the dim is the static size 1.
    pub fn is_one(&self) -> bool {
        *self == Dim::Static(1)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Static(n) => write!(f, "{n}"),
            Dim::Dynamic(Some(s)) => f.write_str(s),
            Dim::Dynamic(None) => f.write_str("?"),
        }
    }
}

/// A shape: a list of dims (rank 0 is a scalar).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub SmallVec<[Dim; 6]>);

impl Shape {
    /// A fully static shape.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Static(d)).collect())
    }

    /// A scalar (rank 0).
    pub fn scalar() -> Shape {
        Shape(SmallVec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// Concrete dims: the static ones as they are, each dynamic one sized by
    /// `size(name)` (`None` for an anonymous `?`), called in dim order.
    pub fn concrete(&self, mut size: impl FnMut(Option<&str>) -> usize) -> Vec<usize> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Static(n) => *n,
                Dim::Dynamic(name) => size(name.as_deref()),
            })
            .collect()
    }

    /// The concrete dims if every dim is static.
    pub fn as_static(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::as_static).collect()
    }

    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Static(_)))
    }

    /// Element count if static. `None` on overflow or dynamic dims.
    pub fn static_numel(&self) -> Option<usize> {
        self.0
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d.as_static()?))
    }

    /// True if a concrete shape `dims` is an instance of this shape
    /// (same rank, equal static dims; dynamic dims match anything).
    pub fn matches(&self, dims: &[usize]) -> bool {
        self.rank() == dims.len()
            && self.0.iter().zip(dims).all(|(d, &c)| match d {
                Dim::Static(n) => *n == c,
                Dim::Dynamic(_) => true,
            })
    }
}

impl FromIterator<Dim> for Shape {
    fn from_iter<I: IntoIterator<Item = Dim>>(iter: I) -> Self {
        Shape(iter.into_iter().collect())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Broadcasts two symbolic shapes with numpy rules.
///
/// Returns `None` when two static dims differ and neither is 1. A dynamic dim
/// against a static `n > 1` gives `n` (the run-time check enforces it); against 1
/// it stays dynamic; two different dynamic dims give an anonymous dynamic dim.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut out = SmallVec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.rank()).checked_sub(rank).map(|j| &a.0[j]);
        let db = (i + b.rank()).checked_sub(rank).map(|j| &b.0[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => broadcast_dim(x, y)?,
            (None, None) => unreachable!("i < rank of at least one shape"),
        };
        out.push(d);
    }
    Some(Shape(out))
}

fn broadcast_dim(x: &Dim, y: &Dim) -> Option<Dim> {
    Some(match (x, y) {
        (Dim::Static(a), Dim::Static(b)) => {
            if a == b || *b == 1 {
                Dim::Static(*a)
            } else if *a == 1 {
                Dim::Static(*b)
            } else {
                return None;
            }
        }
        (Dim::Static(1), d) | (d, Dim::Static(1)) => d.clone(),
        (Dim::Static(n), Dim::Dynamic(_)) | (Dim::Dynamic(_), Dim::Static(n)) => Dim::Static(*n),
        (Dim::Dynamic(a), Dim::Dynamic(b)) => {
            if a == b && a.is_some() {
                x.clone()
            } else {
                Dim::Dynamic(None)
            }
        }
    })
}

/// Broadcasts two concrete shapes with numpy rules; `None` if incompatible.
pub fn broadcast_concrete(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let x = (i + a.len()).checked_sub(rank).map_or(1, |j| a[j]);
            let y = (i + b.len()).checked_sub(rank).map_or(1, |j| b[j]);
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect()
}

/// The type of a value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_sizes_dynamic_dims_by_name_in_order() {
        let s: Shape = [
            Dim::sym("B"),
            Dim::Static(12),
            Dim::Dynamic(None),
            Dim::sym("S"),
        ]
        .into_iter()
        .collect();
        let mut seen = vec![];
        let dims = s.concrete(|name| {
            seen.push(name.map(str::to_string));
            match name {
                Some("B") => 2,
                Some(_) => 7,
                None => 5,
            }
        });
        assert_eq!(dims, vec![2, 12, 5, 7]);
        assert_eq!(seen, vec![Some("B".into()), None, Some("S".into())]);
    }

    #[test]
    fn broadcast_numpy_rules() {
        let a = Shape::fixed(&[8, 1, 6, 1]);
        let b = Shape::fixed(&[7, 1, 5]);
        assert_eq!(broadcast_shapes(&a, &b), Some(Shape::fixed(&[8, 7, 6, 5])));
        assert_eq!(
            broadcast_shapes(&Shape::fixed(&[3]), &Shape::fixed(&[4])),
            None
        );
        let n = Shape(smallvec::smallvec![Dim::sym("N"), Dim::Static(1)]);
        let m = Shape(smallvec::smallvec![Dim::Static(1), Dim::Static(5)]);
        assert_eq!(
            broadcast_shapes(&n, &m),
            Some(Shape(smallvec::smallvec![Dim::sym("N"), Dim::Static(5)]))
        );
        assert_eq!(broadcast_concrete(&[2, 1], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_concrete(&[2, 2], &[3]), None);
    }
}
