//! Resource quantities and the pod's effective requests and limits (R66–R67).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct BadQuantity(pub String);

/// Parses a Kubernetes quantity into thousandths of its unit (`100m` → 100, `1Gi` → 1073741824000).
/// Quantities past what an `i128` holds saturate at its bounds, and digits past the 30th
/// after the point are dropped (they are far below a thousandth): every quantity the API server
/// accepts gives a number, never a wrap or a panic.
pub fn parse_milli(q: &str) -> Result<i128, BadQuantity> {
    let bad = || BadQuantity(q.to_string());
    let s = q.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let (mult_num, mult_den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "u" => (1, 1000),
        "n" => (1, 1_000_000),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1024 * 1000, 1),
        "Mi" => (1024i128.pow(2) * 1000, 1),
        "Gi" => (1024i128.pow(3) * 1000, 1),
        "Ti" => (1024i128.pow(4) * 1000, 1),
        "Pi" => (1024i128.pow(5) * 1000, 1),
        "Ei" => (1024i128.pow(6) * 1000, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            // Past the range: saturated above, nothing below.
            let pow = 10i128.checked_pow(exp.unsigned_abs()).unwrap_or(i128::MAX);
            if exp >= 0 { (pow.saturating_mul(1000), 1) } else { (1000, pow) }
        }
        _ => return Err(bad()),
    };
    let (neg, digits) = match num.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, num.trim_start_matches('+')),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let frac = &frac[..frac.len().min(30)];
    let scale = 10i128.pow(frac.len() as u32);
    // Digits only, so a failure is an overflow.
    let whole: i128 = format!("{int}{frac}").parse().unwrap_or(i128::MAX);
    let value = match scale.checked_mul(mult_den) {
        Some(den) => whole.checked_mul(mult_num).map_or(i128::MAX, |v| v / den),
        None => 0,
    };
    Ok(if neg { -value } else { value })
}

/// Formats thousandths back to a quantity: whole units when exact, else milli-units.
pub fn format_milli(v: i128) -> String {
    if v % 1000 == 0 { (v / 1000).to_string() } else { format!("{v}m") }
}

fn amounts(r: Option<&ResourceRequirements>, limits: bool) -> Result<BTreeMap<String, i128>, BadQuantity> {
    let map: Option<&BTreeMap<String, Quantity>> =
        r.and_then(|r| if limits { r.limits.as_ref() } else { r.requests.as_ref() });
    map.into_iter().flatten().map(|(k, q)| Ok((k.clone(), parse_milli(&q.0)?))).collect()
}

fn add(into: &mut BTreeMap<String, i128>, from: &BTreeMap<String, i128>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
}

fn max_into(into: &mut BTreeMap<String, i128>, from: &BTreeMap<String, i128>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
}

/// The pod's quality of service class, as the API server sets `status.qosClass` at creation:
/// `BestEffort` without any CPU or memory request or limit, `Guaranteed` when every container
/// and init container has CPU and memory limits and the pod's requests equal its limits
/// (summed over the containers), `Burstable` otherwise. Zero or unparsable amounts count as none.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let r = c.resources.as_ref();
        let mut limited = 0;
        for (list, into, is_limit) in [
            (r.and_then(|r| r.requests.as_ref()), &mut requests, false),
            (r.and_then(|r| r.limits.as_ref()), &mut limits, true),
        ] {
            for (name, q) in list.into_iter().flatten() {
                let name = match name.as_str() {
                    "cpu" => "cpu",
                    "memory" => "memory",
                    _ => continue,
                };
                let amount = parse_milli(&q.0).unwrap_or(0);
                if amount > 0 {
                    let e = into.entry(name).or_default();
                    *e = e.saturating_add(amount);
                    limited += usize::from(is_limit);
                }
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        return "Guaranteed";
    }
    "Burstable"
}

/// The pod's effective requests (or limits) per resource, in thousandths (R66): the larger of
/// the long-running sum (regular containers and sidecars) and the peak during initialization,
/// where each regular init container runs alongside the sidecars started before it.
pub fn effective(spec: &PodSpec, limits: bool) -> Result<BTreeMap<String, i128>, BadQuantity> {
    let get = |c: &Container| amounts(c.resources.as_ref(), limits);
    let mut long_running = BTreeMap::new();
    for c in &spec.containers {
        add(&mut long_running, &get(c)?);
    }
    let mut sidecars = BTreeMap::new();
    let mut init_max = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let own = get(c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut long_running, &own);
            add(&mut sidecars, &own);
            max_into(&mut init_max, &sidecars);
        } else {
            let mut alongside = sidecars.clone();
            add(&mut alongside, &own);
            max_into(&mut init_max, &alongside);
        }
    }
    max_into(&mut long_running, &init_max);
    if let Some(overhead) = &spec.overhead {
        for (k, q) in overhead {
            let e = long_running.entry(k.clone()).or_default();
            *e = e.saturating_add(parse_milli(&q.0)?);
        }
    }
    Ok(long_running)
}
