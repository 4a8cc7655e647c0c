"""`bootstrap certs renew [all|NAME...]`: re-issue, then roll master by master.

1. Re-issue the named leaf and kubeconfig client certs in the local state (new keys,
   same subjects and SANs, validity ``certificates.certValidity`` from now; never a CA,
   never sa.*). From here on the state is the desired state: a master not yet renewed
   shows as DRIFT in ``certs check``.
2. Ask etcd (through the tunnels, with the freshly issued client cert: same CA, so it
   works whatever the hosts hold) whether the cluster is healthy.
3. Healthy: snapshot, then per master push + wait for every restarted pod + health.
   Not healthy because etcd certificates on the hosts have expired: a rolling renew
   cannot work (a renewed member refuses its peers' expired certificates and vice
   versa, so it never rejoins), so every master gets its files at once and we wait for
   quorum. No snapshot is possible then (no member passes TLS verification); renew never
   touches the data directories. Not healthy for another reason: stop, change nothing.

Nothing here needs a working apiserver (kubespray#8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bootstrap.day2.certs import HostCerts, read_host_certs, renew_labels
from bootstrap.errors import OperationError, plural
from bootstrap.inventory.model import PKI_DIR
from bootstrap.run.session import Session
from bootstrap.workflow import masterroll

ETCD_MEMBER_CERTS = (f"{PKI_DIR}/etcd/server.crt", f"{PKI_DIR}/etcd/peer.crt")


def expired_etcd_certs(found: Mapping[str, HostCerts], now: datetime) -> list[str]:
    """ "cp1: etcd/peer.crt" for each etcd member cert on a host outside its validity."""
    bad = []
    for name, host in found.items():
        for path in ETCD_MEMBER_CERTS:
            cert = host.certs.get(path)
            if cert is None:
                continue
            if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
                bad.append(f"{name}: {path.removeprefix(PKI_DIR + '/')}")
    return bad


def _etcd_health(session: Session) -> tuple[bool, str]:
    from bootstrap.health.waits import etcd_statuses

    statuses = etcd_statuses(session)
    down = {n: s for n, s in statuses.items() if isinstance(s, str)}
    leaders = {s.leader_id for s in statuses.values() if not isinstance(s, str)}
    if not down and len(leaders) == 1 and 0 not in leaders:
        return True, f"{len(statuses)}/{len(statuses)} members answering, leader elected"
    detail = "; ".join(f"{n}: {s}" for n, s in sorted(down.items())) or "no leader"
    return False, detail


def renew_cluster(session: Session, names: Sequence[str], *, keep: int = 5) -> int:
    from bootstrap.day2.snapshot import copy_member_db, take_snapshot
    from bootstrap.pki import ensure_pki

    labels = renew_labels(session.inventory, session.state_dir, names)
    now = datetime.now(UTC)
    found = session.each_host(lambda _m, host: read_host_certs(host))
    pki = ensure_pki(session.inventory, session.state_dir, renew=labels, now=now)
    session.pki = pki  # the renewed state is what every later step pushes and uses
    for event in pki.events:
        session.console.event("renew", event)
    healthy, detail = _etcd_health(session)
    all_at_once = False
    if healthy:
        session.console.event("renew", f"etcd healthy before renewal: {detail}")
        take_snapshot(session, keep=keep, phase="renew")
    else:
        expired = expired_etcd_certs(found, now)
        if not expired:
            raise OperationError(
                f"etcd is not healthy before the renewal ({detail}); not touching any master",
                hint="the local state already holds the renewed certificates; fix etcd "
                "(bootstrap status / verify), then run `bootstrap certs renew` again",
            )
        all_at_once = True
        session.console.event(
            "renew",
            "etcd is down and etcd certificates on the hosts are expired ("
            + ", ".join(expired)
            + "): pushing the renewed certificates to ALL masters at once, since a member "
            "renewed alone cannot rejoin peers whose certificates expired. No member passes "
            "TLS verification, so instead of a snapshot the (quiescent: no quorum, no writes) "
            "database file of one member is copied; the data directories are not touched",
        )
        copy_member_db(session, keep=keep, phase="renew")
    state = masterroll.roll_masters(session, "renew", "renewed", all_at_once=all_at_once)
    after = session.each_host(lambda _m, host: read_host_certs(host))
    soonest = min(
        (c.not_valid_after_utc for h in after.values() for c in h.certs.values()), default=None
    )
    session.console.out(
        f"certs renew: {plural(len(labels), 'certificate')} re-issued; "
        f"{'all masters at once' if all_at_once else 'master by master'}; "
        f"renewed: {', '.join(state.done) or 'none'}"
        + (f"; unchanged: {', '.join(state.unchanged)}" if state.unchanged else "")
        + (f"; soonest expiry now {soonest:%Y-%m-%d %H:%M} UTC" if soonest else "")
    )
    return 0
