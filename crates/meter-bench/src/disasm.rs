//! Soft-float check: reads `llvm-objdump -d -C` output of the bench image,
//! builds the static call graph and walks what a root symbol can reach.
//!
//! An edge is any instruction annotated with another function's symbol
//! (`jal`/`jalr` calls, `j`/`jr` tail calls, branches out of the function).
//! An indirect call (`jalr` through a register without a resolved target)
//! cannot be followed; it is reported, and the check refuses to call such a
//! closure clean.
//!
//! The walk stops at *boundaries* (see [`Boundary`]): panic entry points
//! (cold, the image stops there) and the engine's once-per-interval
//! conversion to physical units, where floats are allowed by design. The
//! boundaries reached are listed in the [`Closure`], so nothing is hidden.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One function of the disassembly: its outgoing edges and indirect calls.
#[derive(Debug, Default, Clone)]
pub struct Function {
    /// Other functions this one calls or jumps to.
    pub callees: BTreeSet<String>,
    /// Instructions that call through a register with no known target.
    pub indirect_calls: Vec<String>,
    /// Number of instructions.
    pub instructions: usize,
}

/// The static call graph of an image.
#[derive(Debug, Default)]
pub struct CallGraph {
    /// Functions by (demangled) symbol name.
    pub functions: BTreeMap<String, Function>,
}

/// Why the walk does not go past a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Boundary {
    /// A panic entry point: cold, never returns; formatting behind it is not
    /// the per-sample path.
    Panic,
    /// The engine's once-per-interval conversion of integer sums to physical
    /// units (`metering::…::take_interval`): floats are allowed there.
    PerInterval,
}

/// A symbol name without its legacy-mangling hash (`::h0123456789abcdef`).
pub fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// The boundary a function is, if any.
pub fn boundary(name: &str) -> Option<Boundary> {
    let n = strip_hash(name);
    let panic = n.starts_with("core::panicking::")
        || n == "__rustc::rust_begin_unwind"
        || n == "rust_begin_unwind"
        || n.starts_with("core::option::unwrap_failed")
        || n.starts_with("core::option::expect_failed")
        || n.starts_with("core::result::unwrap_failed")
        || (n.starts_with("core::slice::index::") && n.ends_with("_fail"));
    if panic {
        Some(Boundary::Panic)
    } else if n.starts_with("metering::") && n.ends_with("::take_interval") {
        Some(Boundary::PerInterval)
    } else {
        None
    }
}

/// What a root symbol can reach.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Closure {
    /// The root symbol.
    pub root: String,
    /// Every function reachable from the root, root included.
    pub functions: Vec<String>,
    /// Instructions in all those functions (static size, not executed count).
    pub static_instructions: usize,
    /// Soft-float routines among them, each with one call path from the root.
    pub soft_float: Vec<(String, Vec<String>)>,
    /// Unresolvable indirect calls, as `function: instruction`.
    pub indirect_calls: Vec<String>,
    /// Boundaries reached and not walked past, with why.
    pub boundaries: Vec<(String, Boundary)>,
}

impl Closure {
    /// True when nothing reachable is a soft-float routine and every call was resolved.
    pub fn is_float_free(&self) -> bool {
        self.soft_float.is_empty() && self.indirect_calls.is_empty()
    }
}

/// Is `name` a soft-float routine (compiler-rt/compiler_builtins float
/// helpers such as `__mulsf3`, `__adddf3`, `__floatsisf`, `__fixsfsi`,
/// `__eqsf2`, or their Rust implementations, or a libm function)?
pub fn is_soft_float(name: &str) -> bool {
    if name.starts_with("compiler_builtins::float::") || name.starts_with("libm::") {
        return true;
    }
    let Some(rest) = name.strip_prefix("__") else {
        return false;
    };
    if !rest
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return false;
    }
    ["sf", "df", "tf", "hf"].iter().any(|m| rest.contains(m))
}

/// Parses a function header line `80000728 <name>:`.
fn header(line: &str) -> Option<&str> {
    let (addr, rest) = line.split_once(' ')?;
    if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    rest.strip_prefix('<')?.strip_suffix(">:")
}

/// The symbol an instruction line is annotated with (`... <sym>` or `<sym+0x12>`).
fn target(line: &str) -> Option<&str> {
    let start = line.find('<')?;
    let inner = line[start + 1..].strip_suffix('>')?;
    Some(match inner.rfind("+0x") {
        Some(plus) => &inner[..plus],
        None => inner,
    })
}

/// The mnemonic of an instruction line `addr: \tmnemonic operands`.
fn mnemonic(line: &str) -> Option<&str> {
    let (_, insn) = line.split_once(':')?;
    insn.split_whitespace().next()
}

/// Local labels LLVM emits inside functions (`.Lpcrel_hi2`, `.LBB0_1`):
/// they belong to the function before them.
fn is_local_label(name: &str) -> bool {
    name.starts_with(".L")
}

impl CallGraph {
    /// Builds the graph from `llvm-objdump -d -C --no-show-raw-insn` output.
    pub fn parse(objdump: &str) -> Self {
        let mut graph = CallGraph::default();
        let mut current: Option<String> = None;
        let mut aliases: BTreeMap<String, String> = BTreeMap::new();
        for line in objdump.lines() {
            if let Some(name) = header(line) {
                if is_local_label(name) {
                    if let Some(cur) = &current {
                        aliases.insert(name.to_string(), cur.clone());
                    }
                } else {
                    current = Some(name.to_string());
                    graph.functions.entry(name.to_string()).or_default();
                }
                continue;
            }
            let Some(cur) = &current else { continue };
            let Some(mn) = mnemonic(line) else { continue };
            let f = graph.functions.entry(cur.clone()).or_default();
            f.instructions += 1;
            match target(line) {
                Some(t) if t != cur && !is_local_label(t) => {
                    f.callees.insert(t.to_string());
                }
                Some(_) => {}
                None => {
                    // `jalr` with a link register and no resolved target is a
                    // call through a pointer. (`ret` and `jr reg` are returns
                    // and jump tables inside the function.)
                    if mn == "jalr" || mn == "c.jalr" {
                        f.indirect_calls.push(line.trim().to_string());
                    }
                }
            }
        }
        // Edges to local labels of another function resolve to that function.
        for f in graph.functions.values_mut() {
            let resolved: BTreeSet<String> = f
                .callees
                .iter()
                .map(|c| aliases.get(c).cloned().unwrap_or_else(|| c.clone()))
                .collect();
            f.callees = resolved;
        }
        graph
    }

    /// Everything reachable from `root`, or `None` if `root` is not in the image.
    pub fn closure(&self, root: &str) -> Option<Closure> {
        self.functions.get(root)?;
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        let mut seen: BTreeSet<String> = BTreeSet::from([root.to_string()]);
        let mut queue = VecDeque::from([root.to_string()]);
        while let Some(name) = queue.pop_front() {
            if name != root && boundary(&name).is_some() {
                continue;
            }
            let Some(f) = self.functions.get(&name) else {
                continue;
            };
            for c in &f.callees {
                if seen.insert(c.clone()) {
                    parent.insert(c.clone(), name.clone());
                    queue.push_back(c.clone());
                }
            }
        }
        let path_to = |name: &str| {
            let mut path = vec![name.to_string()];
            let mut at = name;
            while let Some(p) = parent.get(at) {
                path.push(p.clone());
                at = p;
            }
            path.reverse();
            path
        };
        let boundaries: Vec<(String, Boundary)> = seen
            .iter()
            .filter(|n| n.as_str() != root)
            .filter_map(|n| boundary(n).map(|b| (n.clone(), b)))
            .collect();
        let walked = |n: &&String| n.as_str() == root || boundary(n).is_none();
        let soft_float = seen
            .iter()
            .filter(|n| is_soft_float(n))
            .map(|n| (n.clone(), path_to(n)))
            .collect();
        let indirect_calls = seen
            .iter()
            .filter(walked)
            .filter_map(|n| self.functions.get(n).map(|f| (n, f)))
            .flat_map(|(n, f)| f.indirect_calls.iter().map(move |i| format!("{n}: {i}")))
            .collect();
        let static_instructions = seen
            .iter()
            .filter(walked)
            .filter_map(|n| self.functions.get(n))
            .map(|f| f.instructions)
            .sum();
        Some(Closure {
            root: root.to_string(),
            functions: seen.into_iter().collect(),
            static_instructions,
            soft_float,
            indirect_calls,
            boundaries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
80000728 <baseline::CalcVi::step::h7a1b>:
80000758:      \tjalr\t0x3e(ra) <__floatunsisf>
8000086a:      \tbeqz\ts6, 0x8000087a <baseline::CalcVi::step::h7a1b+0x152>
80000878:      \tret

80000892 <bench_baseline_1v1ct>:
80000892:      \tlhu\ta3, 0x0(a1)
800008a0:      \tjr\t-0x174(t1) <baseline::CalcVi::step::h7a1b>

800008b0 <bench_ours>:
800008b0:      \tjal\t0x80000900 <metering::Meter::push>
800008b4:      \tret

80000900 <metering::Meter::push>:
80000900:      \tmul\ta0, a0, a1
80000904:      \tbnez\ta0, 0x80000910 <.Lpcrel_hi7>
80000906:      \tjal\t0x80000d00 <core::panicking::panic_bounds_check>
80000908:      \tret

80000910 <.Lpcrel_hi7>:
80000910:      \tret

80000a00 <bench_pointer>:
80000a00:      \tjalr\ta5
80000a04:      \tret

80000b00 <__floatunsisf>:
80000b00:      \tj\t0x80000c00 <compiler_builtins::float::conv::__floatunsisf>

80000c00 <compiler_builtins::float::conv::__floatunsisf>:
80000c00:      \tret

80000d00 <core::panicking::panic_bounds_check>:
80000d00:      \tjalr\ta5
80000d04:      \tjal\t0x80000b00 <__floatunsisf>

80000e00 <bench_interval>:
80000e00:      \tjal\t0x80000f00 <metering::meter::Meter::close_cycle::h0123456789abcdef>

80000f00 <metering::meter::Meter::close_cycle::h0123456789abcdef>:
80000f00:      \tjal\t0x80001000 <metering::meter::Meter::take_interval::hfedcba9876543210>

80001000 <metering::meter::Meter::take_interval::hfedcba9876543210>:
80001000:      \tjal\t0x80000b00 <__floatunsisf>

80001100 <bench_float_in_cycle>:
80001100:      \tjal\t0x80000b00 <__floatunsisf>
80001104:      \tjal\t0x80001000 <metering::meter::Meter::take_interval::hfedcba9876543210>
";

    #[test]
    fn recognises_soft_float_routines() {
        for n in [
            "__mulsf3",
            "__addsf3",
            "__subsf3",
            "__divsf3",
            "__floatsisf",
            "__floatunsisf",
            "__fixsfsi",
            "__fixunssfsi",
            "__muldf3",
            "__eqsf2",
            "__gtsf2",
            "__extendsfdf2",
            "__truncdfsf2",
            "compiler_builtins::float::mul::__mulsf3",
            "libm::math::sqrt::sqrtf::h1",
        ] {
            assert!(is_soft_float(n), "{n}");
        }
        for n in [
            "__udivdi3",
            "__muldi3",
            "__ashldi3",
            "__lshrdi3",
            "memset",
            "metering::Meter::push",
            "__rust_probestack",
        ] {
            assert!(!is_soft_float(n), "{n}");
        }
    }

    #[test]
    fn tail_calls_are_followed_to_soft_float() {
        let g = CallGraph::parse(SAMPLE);
        let c = g.closure("bench_baseline_1v1ct").unwrap();
        assert!(!c.is_float_free());
        let names: Vec<&str> = c.soft_float.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"__floatunsisf"), "{names:?}");
        assert!(names.contains(&"compiler_builtins::float::conv::__floatunsisf"));
        let (_, path) = &c.soft_float[0];
        assert_eq!(
            path.first().map(String::as_str),
            Some("bench_baseline_1v1ct")
        );
    }

    #[test]
    fn integer_closure_is_clean_and_local_labels_stay_inside() {
        let g = CallGraph::parse(SAMPLE);
        let c = g.closure("bench_ours").unwrap();
        assert!(c.is_float_free(), "{c:?}");
        assert_eq!(
            c.functions,
            vec![
                "bench_ours",
                "core::panicking::panic_bounds_check",
                "metering::Meter::push"
            ]
        );
        assert_eq!(c.static_instructions, 2 + 5);
        assert_eq!(
            c.boundaries,
            vec![(
                "core::panicking::panic_bounds_check".to_string(),
                Boundary::Panic
            )]
        );
    }

    #[test]
    fn per_interval_conversion_is_a_boundary_but_floats_before_it_are_not() {
        let g = CallGraph::parse(SAMPLE);
        let c = g.closure("bench_interval").unwrap();
        assert!(c.is_float_free(), "{c:?}");
        assert_eq!(c.boundaries.len(), 1);
        assert_eq!(c.boundaries[0].1, Boundary::PerInterval);
        let c = g.closure("bench_float_in_cycle").unwrap();
        assert!(!c.is_float_free());
    }

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(strip_hash("a::hello"), "a::hello");
        assert_eq!(
            boundary("metering::meter::Meter::take_interval::h0123456789abcdef"),
            Some(Boundary::PerInterval)
        );
        assert_eq!(
            boundary("metering::meter::Meter::push::h0123456789abcdef"),
            None
        );
    }

    #[test]
    fn indirect_calls_make_a_closure_unprovable() {
        let g = CallGraph::parse(SAMPLE);
        let c = g.closure("bench_pointer").unwrap();
        assert!(c.soft_float.is_empty());
        assert_eq!(c.indirect_calls.len(), 1);
        assert!(!c.is_float_free());
    }

    #[test]
    fn unknown_root_is_none() {
        assert!(CallGraph::parse(SAMPLE).closure("nope").is_none());
    }
}
