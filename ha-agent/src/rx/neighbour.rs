//! The agent's side of the XDP program's neighbour watch (`ha_common::neighbour`): it names the
//! shared addresses and this interface's MAC, stamps the agent's liveness for the fence, and
//! reads the claims other MACs made for the addresses.
use std::{net::IpAddr, time::Duration};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
};
use ha_common::neighbour::{
    AGENT_MAP, AgentStamp, LAST_CLAIM_MAP, LastClaim, MAX_VIPS, NEIGH_STATS_MAP, NeighbourStats, VIPS_MAP, vip_key_v4,
};

#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("map {0} is missing from the object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: MapError },
    #[error("{0} shared addresses: the XDP program watches at most {MAX_VIPS}")]
    TooMany(usize),
}

/// What the program is told about this node.
#[derive(Clone, Debug)]
pub struct NeighbourConfig {
    pub vips: Vec<IpAddr>,
    pub mac: [u8; 6],
    /// The fence rises once the agent's stamp is this old.
    pub tolerance: Duration,
}

pub struct NeighbourMaps {
    agent: Array<MapData, AgentStamp>,
    last_claim: Array<MapData, LastClaim>,
    stats: PerCpuArray<MapData, NeighbourStats>,
    stamp: AgentStamp,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> NeighbourError {
    move |source| NeighbourError::Map { name, source }
}

/// The `VIPS` key of a shared address.
pub fn vip_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => vip_key_v4(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl NeighbourMaps {
    /// Takes the maps out of a loaded object, names the shared addresses and stamps once: the
    /// fence is down from here on while [`NeighbourMaps::stamp`] keeps coming.
    pub fn take_from(ebpf: &mut Ebpf, cfg: &NeighbourConfig, now_ns: u64) -> Result<Self, NeighbourError> {
        if cfg.vips.len() > MAX_VIPS as usize {
            return Err(NeighbourError::TooMany(cfg.vips.len()));
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(NeighbourError::Missing(name));
        let mut vips: HashMap<MapData, [u8; 16], u8> = HashMap::try_from(take(VIPS_MAP)?).map_err(map_err("VIPS"))?;
        let agent = Array::try_from(take(AGENT_MAP)?).map_err(map_err("AGENT"))?;
        let last_claim = Array::try_from(take(LAST_CLAIM_MAP)?).map_err(map_err("LAST_CLAIM"))?;
        let stats = PerCpuArray::try_from(take(NEIGH_STATS_MAP)?).map_err(map_err("NEIGH_STATS"))?;
        let tolerance_ns = u64::try_from(cfg.tolerance.as_nanos()).unwrap_or(u64::MAX);
        let stamp = AgentStamp { stamp_ns: now_ns, tolerance_ns, mac: cfg.mac, _pad: [0; 2] };
        let mut maps = Self { agent, last_claim, stats, stamp };
        maps.stamp(now_ns)?;
        for vip in &cfg.vips {
            vips.insert(&vip_key(*vip), &1u8, 0).map_err(map_err("VIPS"))?;
        }
        Ok(maps)
    }

    /// This agent is alive at `now_ns` (`CLOCK_MONOTONIC`); the fence is armed.
    pub fn stamp(&mut self, now_ns: u64) -> Result<(), NeighbourError> {
        self.stamp.stamp_ns = now_ns;
        self.agent.set(0, &self.stamp, 0).map_err(map_err("AGENT"))
    }

    /// No fence until the next [`NeighbourMaps::stamp`] (a tolerance of 0 never rises): this
    /// node holds no address, and stops stamping. The MAC stays, so claims are still told apart.
    pub fn unfence(&mut self) -> Result<(), NeighbourError> {
        let off = AgentStamp { tolerance_ns: 0, ..self.stamp };
        self.agent.set(0, &off, 0).map_err(map_err("AGENT"))
    }

    /// The last claim by another MAC (`at_ns == 0`: none yet).
    pub fn last_claim(&self) -> Result<LastClaim, NeighbourError> {
        self.last_claim.get(&0, 0).map_err(map_err("LAST_CLAIM"))
    }

    /// Claims counted and requests fenced, summed over CPUs.
    pub fn stats(&self) -> Result<NeighbourStats, NeighbourError> {
        let per_cpu = self.stats.get(&0, 0).map_err(map_err("NEIGH_STATS"))?;
        let mut total = NeighbourStats::default();
        for s in per_cpu.iter() {
            total.add(s);
        }
        Ok(total)
    }
}
