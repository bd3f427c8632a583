//! Random packet loss without sch_netem (kernels built without it, like our CI's): a
//! seven-instruction BPF program on an interface's tcx hook drops each packet with the given
//! probability. The returned link fd is the attachment: closing it detaches.

use std::os::fd::OwnedFd;

use anyhow::{Result, ensure};

use crate::tcx::{TCX_DROP, TCX_NEXT, attach_ingress, insn};

const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
/// Loss granularity: basis points.
const SCALE: i32 = 10_000;

/// Parses a netem spec that only asks for loss (`loss 10%`, `loss random 2.5%`) into a
/// probability in percent; anything else cannot be emulated without sch_netem.
pub fn loss_only(spec: &str) -> Option<f64> {
    let toks: Vec<&str> = spec.split_whitespace().collect();
    let pct = match toks.as_slice() {
        ["loss", p] | ["loss", "random", p] => *p,
        _ => return None,
    };
    let v: f64 = pct.strip_suffix('%').unwrap_or(pct).parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

/// Attaches the loss program to `iface`'s ingress in the calling thread's namespace: on a
/// switch port, what its host sends, frames its XDP sent back out (XDP_TX) included, which no
/// egress hook of the host sees.
pub fn attach_ingress_loss(iface: &str, percent: f64) -> Result<OwnedFd> {
    ensure!((0.0..=100.0).contains(&percent), "loss {percent}% out of range");
    let threshold = (percent / 100.0 * SCALE as f64).round() as i32;
    let prog = [
        insn(0x85, 0, BPF_FUNC_GET_PRANDOM_U32), // call bpf_get_prandom_u32
        insn(0x94, 0, SCALE),                    // w0 %= SCALE
        insn(0xa5, 2, threshold),                // if r0 < threshold goto drop
        insn(0xb7, 0, TCX_NEXT),                 // r0 = TCX_NEXT
        insn(0x95, 0, 0),                        // exit
        insn(0xb7, 0, TCX_DROP),                 // drop: r0 = TCX_DROP
        insn(0x95, 0, 0),                        // exit
    ];
    attach_ingress(iface, "ha_loss", &prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_specs() {
        assert_eq!(loss_only("loss 10%"), Some(10.0));
        assert_eq!(loss_only("loss random 2.5%"), Some(2.5));
        assert_eq!(loss_only("loss 100"), Some(100.0));
        assert_eq!(loss_only("loss 10% delay 1ms"), None);
        assert_eq!(loss_only("delay 1ms"), None);
        assert_eq!(loss_only("loss 120%"), None);
    }
}
