//! Reading `PEER_LINKS` (`ha_common::links`): which heartbeat link last carried each peer.
use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError},
};
use ha_common::links::{LinkKey, LinkRecord, PEER_LINKS_MAP};

use super::peers::PeersError;

pub struct LinkMaps {
    map: HashMap<MapData, LinkKey, LinkRecord>,
}

impl LinkMaps {
    /// Takes the map out of a loaded object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, PeersError> {
        let map = ebpf.take_map(PEER_LINKS_MAP).ok_or(PeersError::Missing("PEER_LINKS"))?;
        let map = HashMap::try_from(map).map_err(|source| PeersError::Map { name: "PEER_LINKS", source })?;
        Ok(Self { map })
    }

    /// Fills `out` with every (peer, interface index) seen (a few entries: iterated).
    pub fn read(&self, out: &mut Vec<(LinkKey, LinkRecord)>) -> Result<(), PeersError> {
        out.clear();
        for entry in self.map.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                // Deleted while iterating: not ours to worry about.
                Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(PeersError::Map { name: "PEER_LINKS", source }),
            }
        }
        Ok(())
    }
}
