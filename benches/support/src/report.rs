//! Reads back what criterion measured in this run and prints it as a ratio table.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Call first thing in `main`: [`mean_ns`] then ignores results older than this run (left by an
/// earlier run with another filter).
pub fn mark_start() {
    let _ = STARTED.set(SystemTime::now());
}

/// Criterion's output directory, found the way criterion finds it.
fn criterion_home(workspace_root: &str) -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("criterion"),
        None => PathBuf::from(workspace_root).join("target").join("criterion"),
    }
}

/// Criterion's directory-name sanitising of a group or function name.
fn safe(name: &str) -> String {
    name.chars().map(|c| if "?\"/\\*<>:|^".contains(c) { '_' } else { c }).collect()
}

/// Time per iteration in nanoseconds of `group`/`function` from the latest run (from this
/// run only, after [`mark_start`]).
pub fn mean_ns(workspace_root: &str, group: &str, function: &str) -> Option<f64> {
    // `function` may be "name/parameter": criterion sanitises each part on its own.
    let mut path = criterion_home(workspace_root).join(safe(group));
    for part in function.split('/') {
        path.push(safe(part));
    }
    let path = path.join("new").join("estimates.json");
    if let (Some(start), Ok(modified)) = (STARTED.get(), std::fs::metadata(&path).and_then(|m| m.modified()))
        && modified < *start
    {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    // The slope (what criterion prints for linear sampling), else the mean.
    point(&text, "\"slope\"").or_else(|| point(&text, "\"mean\""))
}

fn point(text: &str, key: &str) -> Option<f64> {
    let after = &text[text.find(key)? + key.len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    if after.starts_with("null") {
        return None;
    }
    let start = after.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let rest = &after[start..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

/// Formats a per-second rate.
pub fn per_second(ns: f64) -> String {
    let r = 1e9 / ns;
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.2}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Formats a duration in nanoseconds.
pub fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
