//! NAPI on the switch's veth ends, so native XDP_TX on a host's end is delivered.
//!
//! A veth hands a frame that XDP sends back out (XDP_TX) to its peer's NAPI ring, and kicks
//! that ring only if the peer has an XDP program of its own. GRO alone gives the peer NAPI but
//! no kick (kernel 6.18, measured: the sender counts `xdp_tx`, the frame waits in the port's
//! ring and never reaches the bridge); no NAPI at all drops it. So every bridge port gets a
//! two-instruction XDP_PASS program: frames it passes go on through the bridge as before.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use crate::{
    host::Host,
    tcx::{self, insn},
};

const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP link.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

/// Attaches XDP_PASS natively to each of `devs` (veth ends) in namespace `ns`; dropping the
/// returned link fds detaches them (deleting the devices does too).
pub(crate) fn attach_xdp_pass(ns: &Host, devs: &[String]) -> Result<Vec<OwnedFd>> {
    ns.run_in(|| -> Result<Vec<OwnedFd>> {
        let prog = [
            insn(0xb7, 0, XDP_PASS), // r0 = XDP_PASS
            insn(0x95, 0, 0),        // exit
        ];
        let prog = tcx::load("ha_lab_napi", BPF_PROG_TYPE_XDP, BPF_XDP, &prog)?;
        devs.iter()
            .map(|dev| {
                let ifindex = tcx::ifindex(dev)?;
                tcx::link_create(&prog, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE)
                    .with_context(|| format!("attaching XDP_PASS to {dev} (driver mode)"))
            })
            .collect()
    })?
    .with_context(|| format!("NAPI for the veth ends in {}", ns.name()))
}
