//! Symbolic sizes and strides of the attention IR.
//!
//! A [`Sym`] is a small expression over named dims: the dynamic dims of the body's
//! inputs (`B`, `S`, `L`, or `q.d1` for an unnamed `?`), and the blocking parameters
//! `m_blk`, `n_blk`, `panel`. Static dims are folded to constants when the IR is
//! built. [`Sym::eval`] gives the number for concrete [`DimValues`].

use std::collections::BTreeMap;
use std::fmt;

use crate::LowerError;

/// `ceil(x / y)` for `y > 0` (rounding towards +inf for any sign of `x`).
fn div_ceil(x: i64, y: i64) -> i64 {
    x / y + i64::from(x % y > 0)
}

/// A symbolic non-negative integer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sym {
    Const(i64),
    /// A named quantity: a dynamic dim, or `m_blk` / `n_blk` / `panel`.
    Var(String),
    Add(Vec<Sym>),
    Mul(Vec<Sym>),
    /// `ceil(a / b)`.
    CeilDiv(Box<Sym>, Box<Sym>),
    /// `a` rounded up to a multiple of `b`.
    RoundUp(Box<Sym>, Box<Sym>),
    /// The numpy broadcast of several dims (equal, or 1): their maximum.
    Bcast(Vec<Sym>),
    /// `0` when the dim `a` is 1 (a broadcast batch dim moves no pointer), else `b`.
    UnlessOne(Box<Sym>, Box<Sym>),
}

/// Names of the blocking parameters (their values come from the [`super::MhaBlocking`]).
pub const M_BLK: &str = "m_blk";
pub const N_BLK: &str = "n_blk";
pub const PANEL: &str = "panel";

impl Sym {
    pub fn var(name: &str) -> Sym {
        Sym::Var(name.to_string())
    }

    /// The constant, if this is one.
    pub fn as_const(&self) -> Option<i64> {
        match self {
            Sym::Const(c) => Some(*c),
            _ => None,
        }
    }

    /// True if the value depends on no dim of the input shapes (only constants and
    /// the blocking parameters).
    pub fn is_static(&self) -> bool {
        match self {
            Sym::Const(_) => true,
            Sym::Var(v) => matches!(v.as_str(), M_BLK | N_BLK | PANEL),
            Sym::Add(xs) | Sym::Mul(xs) | Sym::Bcast(xs) => xs.iter().all(Sym::is_static),
            Sym::CeilDiv(a, b) | Sym::RoundUp(a, b) | Sym::UnlessOne(a, b) => {
                a.is_static() && b.is_static()
            }
        }
    }

    /// Adds every variable name this expression uses to `out`.
    pub fn vars(&self, out: &mut std::collections::BTreeSet<String>) {
        match self {
            Sym::Const(_) => {}
            Sym::Var(v) => {
                out.insert(v.clone());
            }
            Sym::Add(xs) | Sym::Mul(xs) | Sym::Bcast(xs) => xs.iter().for_each(|x| x.vars(out)),
            Sym::CeilDiv(a, b) | Sym::RoundUp(a, b) | Sym::UnlessOne(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// `a + b`, folded.
    pub fn plus(a: Sym, b: Sym) -> Sym {
        Sym::sum([a, b])
    }

    /// A sum, flattened, constants folded, zeros dropped.
    pub fn sum(items: impl IntoIterator<Item = Sym>) -> Sym {
        let mut c = 0i64;
        let mut rest = vec![];
        for x in items {
            match x {
                Sym::Const(v) => c = c.saturating_add(v),
                Sym::Add(xs) => {
                    for y in xs {
                        match y {
                            Sym::Const(v) => c = c.saturating_add(v),
                            y => rest.push(y),
                        }
                    }
                }
                x => rest.push(x),
            }
        }
        if c != 0 || rest.is_empty() {
            rest.push(Sym::Const(c));
        }
        if rest.len() == 1 {
            rest.pop().expect("one item")
        } else {
            Sym::Add(rest)
        }
    }

    /// `a * b`, folded.
    pub fn times(a: Sym, b: Sym) -> Sym {
        Sym::product([a, b])
    }

    /// A product, flattened, constants folded (first), ones dropped.
    pub fn product(items: impl IntoIterator<Item = Sym>) -> Sym {
        let mut c = 1i64;
        let mut rest = vec![];
        for x in items {
            match x {
                Sym::Const(v) => c = c.saturating_mul(v),
                Sym::Mul(xs) => {
                    for y in xs {
                        match y {
                            Sym::Const(v) => c = c.saturating_mul(v),
                            y => rest.push(y),
                        }
                    }
                }
                x => rest.push(x),
            }
        }
        if c == 0 {
            return Sym::Const(0);
        }
        if c != 1 || rest.is_empty() {
            rest.insert(0, Sym::Const(c));
        }
        if rest.len() == 1 {
            rest.pop().expect("one item")
        } else {
            Sym::Mul(rest)
        }
    }

    pub fn ceil_div(a: Sym, b: Sym) -> Sym {
        match (&a, &b) {
            (_, Sym::Const(1)) => a,
            (Sym::Const(x), Sym::Const(y)) if *y > 0 => Sym::Const(div_ceil(*x, *y)),
            _ => Sym::CeilDiv(Box::new(a), Box::new(b)),
        }
    }

    pub fn round_up(a: Sym, b: Sym) -> Sym {
        match (&a, &b) {
            (Sym::Mul(xs), Sym::Const(y))
                if *y > 0 && matches!(xs[0], Sym::Const(c) if c % y == 0) =>
            {
                a
            }
            (_, Sym::Const(1)) => a,
            (Sym::Const(x), Sym::Const(y)) if *y > 0 => {
                Sym::Const(div_ceil(*x, *y).saturating_mul(*y))
            }
            _ => Sym::RoundUp(Box::new(a), Box::new(b)),
        }
    }

    /// The broadcast of dims: static 1s drop out, equal dims merge.
    pub fn bcast(items: impl IntoIterator<Item = Sym>) -> Sym {
        let mut rest: Vec<Sym> = vec![];
        for x in items {
            if x == Sym::Const(1) || rest.contains(&x) {
                continue;
            }
            rest.push(x);
        }
        match rest.len() {
            0 => Sym::Const(1),
            1 => rest.pop().expect("one item"),
            _ => Sym::Bcast(rest),
        }
    }

    /// `dim == 1 ? 0 : x`, folded when `dim` is static.
    pub fn unless_one(dim: Sym, x: Sym) -> Sym {
        match dim {
            Sym::Const(1) => Sym::Const(0),
            Sym::Const(_) => x,
            _ if x == Sym::Const(0) => x,
            dim => Sym::UnlessOne(Box::new(dim), Box::new(x)),
        }
    }

    /// The value for `dims`; an error names a quantity without a value.
    pub fn eval(&self, dims: &DimValues) -> Result<i64, LowerError> {
        self.eval_with(&|name| dims.get(name))
    }

    /// This expression with the quantities `dims` gives values for replaced by them,
    /// folded again: what is left depends only on the other quantities.
    pub fn partial_eval(&self, dims: &DimValues) -> Sym {
        let sub = |x: &Sym| x.partial_eval(dims);
        match self {
            Sym::Const(_) => self.clone(),
            Sym::Var(v) => dims.get(v).map_or_else(|_| self.clone(), Sym::Const),
            Sym::Add(xs) => Sym::sum(xs.iter().map(sub)),
            Sym::Mul(xs) => Sym::product(xs.iter().map(sub)),
            Sym::CeilDiv(a, b) => Sym::ceil_div(sub(a), sub(b)),
            Sym::RoundUp(a, b) => Sym::round_up(sub(a), sub(b)),
            Sym::Bcast(xs) => {
                let xs: Vec<Sym> = xs.iter().map(sub).collect();
                // Constants that do not broadcast stay for `eval` to report.
                if xs.iter().all(|x| x.as_const().is_some()) {
                    Sym::Bcast(xs)
                } else {
                    Sym::bcast(xs)
                }
            }
            Sym::UnlessOne(d, x) => Sym::unless_one(sub(d), sub(x)),
        }
    }

    /// The value with quantities looked up by `get` (an error for a missing one).
    pub fn eval_with(
        &self,
        get: &dyn Fn(&str) -> Result<i64, LowerError>,
    ) -> Result<i64, LowerError> {
        let dims = get;
        let over = || LowerError::Unsupported(format!("'{self}' overflows"));
        Ok(match self {
            Sym::Const(c) => *c,
            Sym::Var(v) => dims(v)?,
            Sym::Add(xs) => xs.iter().try_fold(0i64, |a, x| {
                a.checked_add(x.eval_with(dims)?).ok_or_else(over)
            })?,
            Sym::Mul(xs) => xs.iter().try_fold(1i64, |a, x| {
                a.checked_mul(x.eval_with(dims)?).ok_or_else(over)
            })?,
            Sym::CeilDiv(a, b) | Sym::RoundUp(a, b) => {
                let (x, y) = (a.eval_with(dims)?, b.eval_with(dims)?);
                if y <= 0 {
                    return Err(LowerError::Unsupported(format!(
                        "'{self}': divisor {b} = {y} is not positive"
                    )));
                }
                let q = div_ceil(x, y);
                if matches!(self, Sym::CeilDiv(..)) {
                    q
                } else {
                    q.checked_mul(y).ok_or_else(over)?
                }
            }
            Sym::Bcast(xs) => {
                let vals = xs
                    .iter()
                    .map(|x| x.eval_with(dims))
                    .collect::<Result<Vec<_>, _>>()?;
                let big = vals.iter().copied().max().unwrap_or(1);
                if vals.iter().any(|&v| v != 1 && v != big) {
                    return Err(LowerError::Unsupported(format!(
                        "'{self}': dims {vals:?} do not broadcast"
                    )));
                }
                big
            }
            Sym::UnlessOne(d, x) => {
                if d.eval_with(dims)? == 1 {
                    0
                } else {
                    x.eval_with(dims)?
                }
            }
        })
    }

    fn fmt_in(&self, f: &mut fmt::Formatter<'_>, in_product: bool) -> fmt::Result {
        match self {
            Sym::Const(c) => write!(f, "{c}"),
            Sym::Var(v) => f.write_str(v),
            Sym::Add(xs) => {
                if in_product {
                    f.write_str("(")?;
                }
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" + ")?;
                    }
                    x.fmt_in(f, false)?;
                }
                if in_product {
                    f.write_str(")")?;
                }
                Ok(())
            }
            Sym::Mul(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("*")?;
                    }
                    x.fmt_in(f, true)?;
                }
                Ok(())
            }
            Sym::CeilDiv(a, b) => write!(f, "ceil({a}/{b})"),
            Sym::RoundUp(a, b) => write!(f, "roundup({a}, {b})"),
            Sym::Bcast(xs) => {
                f.write_str("bcast(")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
            Sym::UnlessOne(d, x) => write!(f, "({d}==1 ? 0 : {x})"),
        }
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_in(f, false)
    }
}

impl From<usize> for Sym {
    fn from(v: usize) -> Sym {
        Sym::Const(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// Concrete values of the named quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DimValues {
    values: BTreeMap<String, i64>,
}

impl DimValues {
    pub fn new() -> DimValues {
        DimValues::default()
    }

    /// Sets `name`; an error if it already holds a different value.
    pub fn bind(&mut self, name: &str, value: i64) -> Result<(), LowerError> {
        match self.values.get(name) {
            Some(&old) if old != value => Err(LowerError::Unsupported(format!(
                "dim {name} is both {old} and {value}"
            ))),
            _ => {
                self.values.insert(name.to_string(), value);
                Ok(())
            }
        }
    }

    /// Sets `name`, replacing any value (the blocking parameters, say).
    pub fn set(&mut self, name: &str, value: i64) {
        self.values.insert(name.to_string(), value);
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Result<i64, LowerError> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| LowerError::Unsupported(format!("dim {name} has no value")))
    }

    /// Every bound name and value, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_printing() {
        let s = Sym::var("S");
        let e = Sym::product([Sym::Const(12), s.clone(), Sym::Const(64)]);
        assert_eq!(e.to_string(), "768*S");
        assert_eq!(Sym::times(Sym::Const(0), s.clone()), Sym::Const(0));
        assert_eq!(Sym::plus(Sym::Const(0), s.clone()), s);
        let t = Sym::times(Sym::plus(s.clone(), Sym::Const(1)), Sym::var("L"));
        assert_eq!(t.to_string(), "(S + 1)*L");
        assert_eq!(
            Sym::round_up(Sym::Const(100), Sym::Const(64)),
            Sym::Const(128)
        );
        assert_eq!(Sym::bcast([Sym::Const(1), s.clone(), s.clone()]), s);
        assert_eq!(Sym::unless_one(Sym::Const(1), s.clone()), Sym::Const(0));
    }

    #[test]
    fn evaluation() {
        let mut d = DimValues::new();
        d.bind("L", 100).unwrap();
        d.bind("B", 1).unwrap();
        assert!(d.bind("L", 99).is_err());
        let kp = Sym::times(Sym::round_up(Sym::var("L"), Sym::Const(64)), Sym::Const(80));
        assert_eq!(kp.eval(&d).unwrap(), 128 * 80);
        let bs = Sym::unless_one(Sym::var("B"), Sym::var("L"));
        assert_eq!(bs.eval(&d).unwrap(), 0);
        d.set("B", 3);
        assert_eq!(bs.eval(&d).unwrap(), 100);
        assert_eq!(
            Sym::ceil_div(Sym::var("L"), Sym::Const(48))
                .eval(&d)
                .unwrap(),
            3
        );
        assert!(Sym::var("S").eval(&d).is_err());
        let b = Sym::bcast([Sym::var("B"), Sym::var("L")]);
        assert!(b.eval(&d).is_err(), "3 and 100 do not broadcast");
        d.set("B", 1);
        assert_eq!(b.eval(&d).unwrap(), 100);
    }
}
