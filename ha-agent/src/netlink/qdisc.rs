//! Whether an interface's queueing discipline keeps a packet until its departure time
//! (`SO_TXTIME`): `fq` as the root qdisc, or `mq` with `fq` on every queue. Anything else sends
//! a timed packet at once, which would turn a queued heartbeat schedule into one burst.
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcHandle, TcMessage},
};

use super::address::QuerySocket;

/// One qdisc of the interface: its handle, its parent and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub handle: TcHandle,
    pub parent: TcHandle,
    pub kind: String,
}

/// Why timed packets would not wait on this interface, in words for one log line; `None`
/// when they do.
pub fn keeps_departure_times(qdiscs: &[Qdisc]) -> Result<(), String> {
    let Some(root) = qdiscs.iter().find(|q| q.parent == TcHandle::ROOT) else {
        return Err("it has no root qdisc (noqueue)".into());
    };
    match root.kind.as_str() {
        "fq" => Ok(()),
        "mq" => {
            let children: Vec<&Qdisc> = qdiscs.iter().filter(|q| q.parent.major == root.handle.major).collect();
            match children.iter().find(|q| q.kind != "fq") {
                _ if children.is_empty() => Err("its root qdisc is mq without queues".into()),
                Some(other) => Err(format!("its root qdisc is mq with {} on some queue, not fq", other.kind)),
                None => Ok(()),
            }
        }
        kind => Err(format!("its root qdisc is {kind}, not fq")),
    }
}

/// The qdiscs of interface `ifindex`, from the kernel.
pub fn of_interface(ifindex: u32) -> std::io::Result<Vec<Qdisc>> {
    let mut sock = QuerySocket::open()?;
    let replies = sock
        .request(
            "cannot list queueing disciplines",
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )
        .map_err(std::io::Error::other)?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) if i64::from(q.header.index) == i64::from(ifindex) => {
                let kind = q.attributes.iter().find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                })?;
                Some(Qdisc { handle: q.header.handle, parent: q.header.parent, kind })
            }
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(handle: (u16, u16), parent: TcHandle, kind: &str) -> Qdisc {
        Qdisc { handle: TcHandle { major: handle.0, minor: handle.1 }, parent, kind: kind.into() }
    }

    fn under(major: u16, minor: u16) -> TcHandle {
        TcHandle { major, minor }
    }

    #[test]
    fn only_fq_or_mq_of_fq_keeps_departure_times() {
        assert!(keeps_departure_times(&[q((0x8001, 0), TcHandle::ROOT, "fq")]).is_ok());
        let mq_fq = [q((1, 0), TcHandle::ROOT, "mq"), q((0, 0), under(1, 1), "fq"), q((0, 0), under(1, 2), "fq")];
        assert!(keeps_departure_times(&mq_fq).is_ok());
        let mq_mixed =
            [q((1, 0), TcHandle::ROOT, "mq"), q((0, 0), under(1, 1), "fq"), q((0, 0), under(1, 2), "fq_codel")];
        assert!(keeps_departure_times(&mq_mixed).unwrap_err().contains("fq_codel"));
        assert!(keeps_departure_times(&[q((0, 0), TcHandle::ROOT, "fq_codel")]).unwrap_err().contains("fq_codel"));
        assert!(keeps_departure_times(&[q((0, 0), TcHandle::ROOT, "pfifo_fast")]).is_err());
        assert!(keeps_departure_times(&[]).unwrap_err().contains("noqueue"));
    }
}
