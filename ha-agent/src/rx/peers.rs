//! Reading what the XDP program recorded: `PEERS` and `STATS`, from the loaded object (the agent)
//! or from pins (`ha-agent peers`/`status` in another process).
use std::{cell::RefCell, path::Path};

use aya::{
    Ebpf,
    maps::{HashMap, IterableMap, Map, MapData, MapError, PerCpuArray},
};
use ha_common::maps::{MAX_PEERS, PEERS_MAP, PeerRecord, STATS_MAP, Stats};

use super::map_batch::{self, BatchReader};

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error(
        "no pinned map at {0}: is an ha-agent running with this cluster / pin directory? (one receiving with --rx socket keeps no maps: use `ha-agent status`)"
    )]
    NotPinned(String),
    #[error("map {0} is missing from the object")]
    Missing(&'static str),
    #[error("reading map {name}: {source}")]
    Map { name: &'static str, source: MapError },
}

pub struct PeerMaps {
    peers: HashMap<MapData, u32, PeerRecord>,
    stats: PerCpuArray<MapData, Stats>,
    /// Buffers of the one-syscall read, reused by every read; None once the kernel said it
    /// cannot batch (then entries are iterated).
    batch: RefCell<Option<Box<BatchReader<u32, PeerRecord>>>>,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> PeersError {
    move |source| PeersError::Map { name, source }
}

impl PeerMaps {
    /// Takes the maps out of a loaded object (they stay pinned and used by the program).
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, PeersError> {
        let peers = ebpf.take_map(PEERS_MAP).ok_or(PeersError::Missing("PEERS"))?;
        let stats = ebpf.take_map(STATS_MAP).ok_or(PeersError::Missing("STATS"))?;
        Self::from_maps(peers, stats)
    }

    /// Opens the pinned maps of a running agent.
    pub fn open_pinned(dir: &Path) -> Result<Self, PeersError> {
        let open = |name: &str| {
            let path = dir.join(name);
            MapData::from_pin(&path).map_err(|_| PeersError::NotPinned(path.display().to_string()))
        };
        let peers = Map::HashMap(open(PEERS_MAP)?);
        let stats = Map::PerCpuArray(open(STATS_MAP)?);
        Self::from_maps(peers, stats)
    }

    fn from_maps(peers: Map, stats: Map) -> Result<Self, PeersError> {
        Ok(Self {
            peers: HashMap::try_from(peers).map_err(map_err("PEERS"))?,
            stats: PerCpuArray::try_from(stats).map_err(map_err("STATS"))?,
            batch: RefCell::new(Some(Box::new(BatchReader::new(MAX_PEERS)))),
        })
    }

    /// Fills `out` with every recorded peer (reusing its allocation: this runs every tick).
    pub fn read_peers(&self, out: &mut Vec<(u32, PeerRecord)>) -> Result<(), PeersError> {
        out.clear();
        let mut batch = self.batch.borrow_mut();
        if let Some(reader) = batch.as_mut() {
            match reader.read_all(map_batch::fd_of(self.peers.map()), out) {
                Ok(()) => return Ok(()),
                Err(e) if map_batch::unsupported(&e) => {
                    log::debug!("batch lookup of PEERS unavailable ({e}): iterating instead");
                    *batch = None;
                    out.clear();
                }
                Err(io_error) => {
                    let source =
                        MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_lookup_batch", io_error });
                    return Err(PeersError::Map { name: "PEERS", source });
                }
            }
        }
        for entry in self.peers.iter() {
            match entry {
                Ok(pair) => out.push(pair),
                // Removed between key and lookup: the peer is gone, which is fine.
                Err(MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(PeersError::Map { name: "PEERS", source: e });
                }
            }
        }
        Ok(())
    }

    /// Forgets a peer (e.g. after a long silence), so the table shows the cluster as it is.
    pub fn forget(&mut self, node_id: u32) -> Result<(), PeersError> {
        match self.peers.remove(&node_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(PeersError::Map { name: "PEERS", source: e }),
        }
    }

    /// The per-CPU counters, summed.
    pub fn stats(&self) -> Result<Stats, PeersError> {
        let per_cpu = self.stats.get(&0, 0).map_err(map_err("STATS"))?;
        let mut total = Stats::default();
        for cpu in per_cpu.iter() {
            total.add(cpu);
        }
        Ok(total)
    }
}
