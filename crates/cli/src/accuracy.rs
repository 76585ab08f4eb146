//! `snipjit accuracy`: sweeps approximated emitters over f32 bit patterns (all 2^32 by
//! default) against f64 references (see `snipjit_x64::accuracy`) and prints, per op
//! and ISA, the largest ULP and relative errors next to the bound the emitter table
//! states.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use snipjit_x64::Isa;
use snipjit_x64::accuracy::{self, OpReport, OpSpec, PatternRange, SweepConfig};

use crate::error::CliError;

/// `--isa` values of `snipjit accuracy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IsaSet {
    /// Every ISA this CPU supports (others are reported as skipped).
    All,
    /// AVX-512 only (an error if the CPU lacks it).
    Avx512,
    /// AVX2 only.
    Avx2,
}

/// Arguments of `snipjit accuracy`.
#[derive(Debug, Args)]
pub struct AccuracyArgs {
    /// Ops to sweep, comma-separated, or `all` (names: exp, log, tanh, sigmoid, erf,
    /// gelu_erf, gelu_tanh, swish (silu), swish_1.7, mish, elu, softplus, hswish,
    /// hsigmoid, sqrt, reciprocal, pow_3, pow_0.5, pow_-0.5, pow_2.5).
    #[arg(long, default_value = "all", value_name = "NAME[,NAME...]|all")]
    op: String,
    /// ISAs to compile each op for; the f64 reference is computed once for all.
    #[arg(long, value_enum, default_value_t = IsaSet::All)]
    isa: IsaSet,
    /// Sweep every K-th bit pattern (1: all 2^32 f32 values).
    #[arg(long, default_value_t = 1, value_name = "K")]
    stride: u32,
    /// Worker threads.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Print one JSON object per op and ISA (one a line) instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the sweeps, printing progress on stderr and the table (or JSON lines) on
/// stdout. Returns whether every op stayed within its stated bound with exact special
/// values.
pub fn accuracy(args: &AccuracyArgs, out: &mut impl Write) -> Result<bool, CliError> {
    let specs = select_ops(&args.op)?;
    if args.stride == 0 || args.threads == 0 {
        return Err(CliError::Accuracy(
            "--stride and --threads must be at least 1".into(),
        ));
    }
    let wanted: &[Isa] = match args.isa {
        IsaSet::All => &Isa::ALL,
        IsaSet::Avx512 => &[Isa::Avx512],
        IsaSet::Avx2 => &[Isa::Avx2],
    };
    let mut isas = Vec::new();
    for &isa in wanted {
        if isa.is_supported() {
            isas.push(isa);
        } else if args.isa == IsaSet::All {
            eprintln!("SKIPPED: {isa}: this CPU does not support it");
        } else {
            return Err(CliError::Accuracy(format!(
                "this CPU does not support {isa}"
            )));
        }
    }
    if isas.is_empty() {
        return Err(CliError::Accuracy(
            "this CPU supports neither AVX-512 nor AVX2: nothing to sweep".into(),
        ));
    }
    let cfg = SweepConfig {
        threads: args.threads,
        ..SweepConfig::default()
    };
    let ranges = [PatternRange::all(args.stride)];
    let names: Vec<&str> = isas.iter().map(|i| i.name()).collect();
    eprintln!(
        "sweeping {} op(s) on {} over {} inputs each (stride {}), {} thread(s)",
        specs.len(),
        names.join(", "),
        ranges[0].len(),
        args.stride,
        args.threads
    );
    let mut reports = Vec::new();
    for spec in &specs {
        let start = Instant::now();
        let last = Mutex::new(start);
        let progress = |done: u64, total: u64| {
            let now = Instant::now();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if now - *last >= Duration::from_secs(10) {
                *last = now;
                eprintln!(
                    "  {}: {:.1}% ({done} of {total}), {:.0} s",
                    spec.name,
                    100.0 * done as f64 / total as f64,
                    (now - start).as_secs_f64()
                );
            }
        };
        let r = accuracy::sweep(spec, &isas, &ranges, &cfg, &progress)
            .map_err(|e| CliError::Accuracy(format!("sweeping {}: {e}", spec.name)))?;
        let secs = start.elapsed().as_secs_f64();
        for rep in &r {
            eprintln!(
                "{} on {}: max {:.3} ULP, {} over bound, {} special mismatch(es) ({secs:.0} s)",
                rep.op, rep.isa, rep.max_ulp, rep.over_bound, rep.special_mismatches
            );
            if args.json {
                writeln!(out, "{}", json_line(rep, args.stride, secs)).map_err(CliError::Stdout)?;
            }
        }
        reports.extend(r);
    }
    if !args.json {
        write!(out, "{}", table(&reports)).map_err(CliError::Stdout)?;
    }
    Ok(reports.iter().all(OpReport::passed))
}

/// The ops named by `--op`.
fn select_ops(list: &str) -> Result<Vec<OpSpec>, CliError> {
    if list.eq_ignore_ascii_case("all") {
        return Ok(accuracy::ops());
    }
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            accuracy::op_by_name(n).ok_or_else(|| {
                let valid: Vec<String> = accuracy::ops().into_iter().map(|s| s.name).collect();
                CliError::Accuracy(format!(
                    "unknown op '{n}' for --op; valid: all, {}",
                    valid.join(", ")
                ))
            })
        })
        .collect()
}

fn json_line(r: &OpReport, stride: u32, secs: f64) -> serde_json::Value {
    let sample = |s: Option<accuracy::Sample>| {
        s.map(|s| {
            serde_json::json!({
                "x": s.x, "x_bits": format!("{:#010x}", s.x.to_bits()),
                "got": s.got, "want": s.want,
            })
        })
    };
    serde_json::json!({
        "op": r.op,
        "isa": r.isa.name(),
        "stride": stride,
        "inputs": r.inputs,
        "max_ulp": r.max_ulp,
        "max_ulp_at": sample(r.max_ulp_at),
        "max_rel": r.max_rel,
        "max_rel_at": r.max_rel_at,
        "max_tiny_ulp": r.max_tiny_ulp,
        "max_tiny_at": sample(r.max_tiny_at),
        "bound": r.bound,
        "over_bound": r.over_bound,
        "worst_over": sample(r.worst_over),
        "tiny_over": r.tiny_over,
        "special_mismatches": r.special_mismatches,
        "special_samples": r.special_samples.iter().map(|s| sample(Some(*s))).collect::<Vec<_>>(),
        "passed": r.passed(),
        "seconds": secs,
    })
}

/// The closing table: one row per op and ISA.
fn table(reports: &[OpReport]) -> String {
    let mut s = format!(
        "{:<11} {:<6} {:>10} {:>9} {:>14} {:>10} {:<22} {:>10} {:>8}\n",
        "op", "isa", "inputs", "max ULP", "at x", "max rel", "stated bound", "over", "specials"
    );
    for r in reports {
        let at = r
            .max_ulp_at
            .map_or_else(|| "-".to_string(), |a| format!("{:e}", a.x));
        s.push_str(&format!(
            "{:<11} {:<6} {:>10} {:>9.3} {:>14} {:>10.3e} {:<22} {:>10} {:>8}\n",
            r.op,
            r.isa.name(),
            r.inputs,
            r.max_ulp,
            at,
            r.max_rel,
            r.bound,
            r.over_bound + r.tiny_over,
            r.special_mismatches
        ));
    }
    for r in reports.iter().filter(|r| !r.special_samples.is_empty()) {
        let xs: Vec<String> = r
            .special_samples
            .iter()
            .map(|a| format!("{}({:e}) = {:e}, want {:e}", r.op, a.x, a.got, a.want))
            .collect();
        s.push_str(&format!(
            "special mismatches of {} on {}: {}\n",
            r.op,
            r.isa.name(),
            xs.join("; ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_lists_parse() {
        let all = select_ops("all").unwrap();
        assert_eq!(all.len(), accuracy::ops().len());
        let two = select_ops("exp, SiLU").unwrap();
        let names: Vec<&str> = two.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["exp", "swish"]);
        let e = select_ops("exp,nope").unwrap_err().to_string();
        assert!(
            e.contains("unknown op 'nope'") && e.contains("gelu_tanh"),
            "{e}"
        );
    }

    #[test]
    fn a_strided_sweep_prints_a_row_per_op_and_isa() {
        let Some(isa) = Isa::detect() else {
            eprintln!("SKIPPED: no supported ISA");
            return;
        };
        let args = AccuracyArgs {
            op: "sigmoid,sqrt".into(),
            isa: if isa == Isa::Avx512 {
                IsaSet::Avx512
            } else {
                IsaSet::Avx2
            },
            stride: 1 << 16,
            threads: 2,
            json: false,
        };
        let mut out = Vec::new();
        assert!(accuracy(&args, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].starts_with("sigmoid") && rows[0].contains(isa.name()));
        assert!(rows[1].starts_with("sqrt") && rows[1].contains("65536"));
        let json = AccuracyArgs { json: true, ..args };
        let mut out = Vec::new();
        assert!(accuracy(&json, &mut out).unwrap());
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["op"], "sqrt");
        assert_eq!(lines[1]["inputs"], 65536);
        assert!(lines[1]["max_ulp"].as_f64().unwrap() <= 0.5);
    }
}
