//! Parsers against hand-built kernel messages.

use super::*;

const REACHABLE: u16 = 0x02;
const STALE: u16 = 0x04;

fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut m = request(ty, 0, 7, body);
    // Notifications carry no request flag; the parsers do not look at it.
    m[6..8].copy_from_slice(&0u16.to_ne_bytes());
    m
}

fn neigh(ty: u16, ifindex: u32, state: u16, ip: [u8; 4], mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut body = neigh_body(ifindex, IpAddr::from(ip), state, 0);
    if let Some(m) = mac {
        push_attr(&mut body, NDA_LLADDR, &m);
    }
    msg(ty, &body)
}

#[test]
fn route_and_neighbour_replies() {
    let mut body = get_route(IpAddr::from([10, 201, 2, 2]));
    push_attr(&mut body, RTA_OIF, &3u32.to_ne_bytes());
    assert_eq!(parse_route(&body), Some((3, None)));
    push_attr(&mut body, RTA_GATEWAY, &[10, 201, 2, 254]);
    assert_eq!(
        parse_route(&body),
        Some((3, Some(IpAddr::from([10, 201, 2, 254]))))
    );
    assert_eq!(
        parse_route(&get_route(IpAddr::from([1, 2, 3, 4]))),
        None,
        "no oif"
    );

    let m = neigh(
        RTM_NEWNEIGH,
        3,
        REACHABLE,
        [10, 201, 2, 2],
        Some([2, 0, 0, 0, 0, 9]),
    );
    let all: Vec<_> = messages(&m).collect();
    assert_eq!(all.len(), 1);
    let Ok(first) = all[0] else {
        panic!("well-formed")
    };
    assert_eq!((first.ty, first.seq), (RTM_NEWNEIGH, 7));
    let n = parse_neigh(first.payload).unwrap();
    assert_eq!(n.ifindex, 3);
    assert_eq!(n.ip, Some(IpAddr::from([10, 201, 2, 2])));
    assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 9]));
    assert!(n.usable());
    let inc = neigh(RTM_NEWNEIGH, 3, NUD_INCOMPLETE, [10, 201, 2, 2], None);
    let Some(Ok(inc)) = messages(&inc).next() else {
        panic!("well-formed")
    };
    assert!(!parse_neigh(inc.payload).unwrap().usable());
    assert_eq!(error_code(&(-2i32).to_ne_bytes()), -2);
    assert_eq!(error_code(&[]), 0);
}

#[test]
fn neighbour_news_is_a_new_or_changed_mac_on_a_watched_interface() {
    let mut w = Notifications::new(&[7]);
    let ip = [10, 201, 2, 2];
    let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut c = Changes::default();
    // Being resolved, then resolved: news once.
    w.fold(&neigh(RTM_NEWNEIGH, 7, NUD_INCOMPLETE, ip, None), &mut c);
    assert!(!c.any());
    let mut two = neigh(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m1));
    two.extend(neigh(RTM_NEWNEIGH, 7, STALE, ip, Some(m1)));
    w.fold(&two, &mut c);
    assert_eq!(c.neighbours, vec![IpAddr::from(ip)]);
    // Another interface is not ours; a new MAC is news; a route change is.
    let mut c = Changes::default();
    w.fold(&neigh(RTM_NEWNEIGH, 8, REACHABLE, ip, Some(m2)), &mut c);
    assert!(!c.any());
    w.fold(&neigh(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m2)), &mut c);
    assert_eq!(c.neighbours.len(), 1);
    w.fold(&msg(RTM_NEWROUTE, &[0; 12]), &mut c);
    assert!(c.routes);
    // Deleted, then back with the same MAC: news again.
    let mut c = Changes::default();
    w.fold(&neigh(RTM_DELNEIGH, 7, STALE, ip, Some(m2)), &mut c);
    assert!(!c.any());
    w.fold(&neigh(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m2)), &mut c);
    assert_eq!(c.neighbours.len(), 1);
}

#[test]
fn truncated_and_garbage_input_never_panics() {
    let mut w = Notifications::new(&[7]);
    let m = neigh(RTM_NEWNEIGH, 7, REACHABLE, [10, 0, 0, 1], Some([2; 6]));
    for cut in 0..=m.len() {
        let b = &m[..cut];
        w.fold(b, &mut Changes::default());
        for x in messages(b).flatten() {
            let _ = parse_neigh(x.payload);
            let _ = parse_route(x.payload);
        }
        let _ = parse_neigh(b);
        let _ = parse_route(b);
    }
    w.fold(&[0xff; 64], &mut Changes::default());
    // A zero length ends the walk instead of looping.
    assert_eq!(messages(&[0u8; 32]).count(), 1);
}
