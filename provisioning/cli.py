"""`venue-provision`: the CA, the broker's security, claims and the device registry, and the device's own steps.

Exit codes: 0 done, 1 a step failed (it said what to do), 2 bad usage, 3 offline request waiting for
the laptop's signature. The CA and bundle commands need only the base install (no agent extras), so a
technician's laptop can run them. The hub database URL may come from $VENUE_HUB_DB instead of argv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from provisioning import Pending, ProvisioningError, StepFailed, pki

DB_HELP = "Hub database: a SQLite path or postgresql://… (default: $VENUE_HUB_DB, so no password shows in ps)."


def _ca(args: argparse.Namespace) -> Any:
    from provisioning.ca import CertificateAuthority

    return CertificateAuthority.open(Path(args.ca_dir))


def cmd_ca_init(args: argparse.Namespace) -> int:
    from provisioning.ca import CertificateAuthority

    parent = CertificateAuthority.open(Path(args.parent)) if args.parent else None
    ca = CertificateAuthority.init(Path(args.ca_dir), args.name, parent=parent, site=args.site, days=args.days)
    print(f"CA {args.name!r} in {ca.dir}: key {ca.dir / 'ca.key'} (0600, keep it offline), certificate "
          f"{ca.dir / 'ca.pem'}\n  sha256 {pki.fingerprint(ca.cert)}")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    ca = _ca(args)
    out = pki.private_dir(Path(args.out))
    key = pki.new_key()
    cert = ca.issue_service(key.public_key(), args.name, replace=args.replace)
    pki.write_secret(out / f"{args.name}.key", pki.key_pem(key))
    pki.write_secret(out / f"{args.name}.pem", ca.chain_for(cert))
    pki.write_file(out / "ca.pem", pki.cert_pem(ca.chain[-1]), 0o644)
    print(f"{args.name}: {out / (args.name + '.pem')} and {out / (args.name + '.key')} (0600), serial "
          f"{cert.serial_number:x}")
    return 0


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    ca = _ca(args)
    serials = ca.revoke(args.what, args.reason)
    print(f"revoked {', '.join(serials)}; CRL rewritten: {ca.dir / 'crl.pem'}\n"
          "  now run `venue-provision broker crl` and reload mosquitto (SIGHUP) so the broker refuses it")
    return 0


def cmd_ca_crl(args: argparse.Namespace) -> int:
    path = _ca(args).write_crl(args.days)
    print(f"CRL written: {path} (valid {args.days} days: re-issue before then, or every client is refused)")
    return 0


def cmd_ca_list(args: argparse.Namespace) -> int:
    rows = _ca(args).issued()
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
        return 0
    for r in rows:
        state = f"revoked ({r.reason})" if r.revoked else "valid" if r.not_after > time.time() else "expired"
        print(f"{r.serial:<40} {r.kind:<7} {r.name:<24} {r.site or '-':<14} {state}")
    return 0


def cmd_ca_sign_usb(args: argparse.Namespace) -> int:
    from provisioning.bundle import sign_usb

    done = sign_usb(_ca(args), Path(args.usb), days=args.days, replace=args.replace)
    for device, what in done:
        print(f"{device}: {what}")
    if not done:
        print(f"no requests in {Path(args.usb) / 'requests'}")
    return 1 if any(w.startswith("refused") for _, w in done) else 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from provisioning.broker import BrokerPlan, write_broker

    plan = BrokerPlan(host=args.host, dns=tuple(args.dns), ips=tuple(args.ip), bind=args.bind,
                      device_port=args.device_port, claim_port=None if args.no_claims else args.claim_port,
                      service_port=args.service_port, claim_service_port=args.claim_service_port,
                      service_bind=args.service_bind, max_packet_kb=args.max_packet_kb, run_as=args.user,
                      persistence_dir=Path(args.persistence) if args.persistence else None,
                      extra_crls=tuple(Path(p) for p in args.site_crl))
    files = write_broker(_ca(args), Path(args.out), plan)
    print(f"city broker: mosquitto -c {files.conf}")
    if plan.claim_port is not None:
        print(f"claim broker: mosquitto -c {files.claims_conf}")
    return 0


def cmd_broker_crl(args: argparse.Namespace) -> int:
    from provisioning.broker import write_crl_bundle

    path = write_crl_bundle(_ca(args), tuple(Path(p) for p in args.site_crl), Path(args.out))
    print(f"{path} rewritten: reload mosquitto (systemctl reload mosquitto, or kill -HUP) to apply it")
    return 0


def _registry(args: argparse.Namespace) -> Any:
    from hub.registry import Registry

    url = args.db or os.environ.get("VENUE_HUB_DB")
    if not url:
        raise SystemExit("give --db or set VENUE_HUB_DB")
    return Registry(url)


def cmd_claim_create(args: argparse.Namespace) -> int:
    pki.check_identity(args.device)
    pki.check_identity(args.site, "site id")
    reg = _registry(args)
    token = reg.create_claim(args.device, args.site, args.role, args.ttl_h * 3600)
    reg.close()
    print(f"claim token for {args.device} at {args.site} (single use, expires in {args.ttl_h:g} h; "
          f"shown only now):\n{token}")
    return 0


def cmd_claim_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    for c in reg.claims():
        state = "used" if c["used"] else "expired" if c["expires"] < time.time() else "open"
        print(f"{c['device']:<24} {c['site']:<14} {state}")
    reg.close()
    return 0


def cmd_registry_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    devices, refusals = reg.devices(), reg.refusals()
    reg.close()
    if args.json:
        print(json.dumps({"devices": [d.__dict__ for d in devices], "refused": refusals}, indent=1))
        return 0
    for d in devices:
        print(f"{d.device:<24} {d.site:<14} {d.role or '-':<8} {d.status:<8} via {d.via:<7} serial {d.serial}")
    for dev, r in refusals.items():
        print(f"refused: {dev} ({r['reason']}) x{r['count']}")
    return 0


def cmd_registry_retire(args: argparse.Namespace) -> int:
    reg = _registry(args)
    found = reg.retire(args.device)
    reg.close()
    print(f"{args.device}: {'retired (its data is now refused; revoke its certificate too)' if found else 'unknown'}")
    return 0 if found else 1


def cmd_hub_serve(args: argparse.Namespace) -> int:
    from hub.claims import ClaimService, Endpoint

    ident = Path(args.identity)
    files = (ident / "ca.pem", ident / f"{args.name}.pem", ident / f"{args.name}.key")
    service = ClaimService(_registry(args), _ca(args),
                           Endpoint(args.claims, *files) if args.claims else None,
                           Endpoint(args.city, *files) if args.city else None, days=args.days)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    service.start()
    logging.getLogger("hub.claims").info("claim service running (claims %s, city %s)", args.claims, args.city)
    stop.wait()
    service.stop()
    service.registry.close()
    return 0


def cmd_device_provision(args: argparse.Namespace) -> int:
    from provisioning.device import Inputs, provision

    meta = tuple((k, v) for k, _, v in (kv.partition("=") for kv in args.meta))
    inp = Inputs(directory=Path(args.dir), ca=Path(args.ca), broker=args.broker, device=args.id, site=args.site,
                 role=args.role, claim=args.claim or os.environ.get("VENUE_CLAIM_TOKEN"), claim_url=args.claim_url,
                 usb=Path(args.usb) if args.usb else None, template=Path(args.template) if args.template else None,
                 label_png=Path(args.label_png) if args.label_png else None, new_key=args.new_key,
                 meta=meta, hub_key=Path(args.hub_key_file).read_text() if args.hub_key_file else None,
                 allowlist_key=Path(args.allowlist_key_file) if args.allowlist_key_file else None)
    t = time.monotonic()
    try:
        done = provision(inp)
    except Pending as err:
        print(f"\nwaiting: {err}")
        return 3
    print(f"\nprovisioned {done.device} at {done.site} in {time.monotonic() - t:.1f} s; agent config {done.config}\n"
          f"next: venue-provision device selftest --config {done.config}")
    return 0


def cmd_device_selftest(args: argparse.Namespace) -> int:
    from edge_agent.registry import load_config
    from provisioning.selftest import passed, report_body, run_selftest, table

    cfg = load_config(args.config)
    if _agent_running(cfg):
        print("the agent is running: stop it first (systemctl stop edge-agent). The broker gives each device "
              "identity one session, so the self-test's connection would log the agent off.", file=sys.stderr)
        return 2
    rows = run_selftest(cfg, Path(args.models) if args.models else None, args.timeout)
    ok = passed(rows)
    print(json.dumps(report_body(rows), indent=1) if args.json else table(rows))
    if not args.no_report:
        sent = _report(cfg, "selftest", ok, report_body(rows))
        print(f"sent to the hub: {sent}", file=sys.stderr if args.json else sys.stdout)
    return 0 if ok else 1


def _agent_running(cfg: Any) -> bool:
    from edge_agent.doctor import read_status

    try:
        return bool(read_status(Path(cfg.store.path))["agent"] == "running")
    except (FileNotFoundError, OSError, ValueError):
        return False
    except Exception:  # an outbox the agent has not finished creating: not running for our purpose
        return False


def cmd_device_register(args: argparse.Namespace) -> int:
    from edge_agent.registry import load_config

    cfg = load_config(args.config)
    assert cfg.mqtt.tls and cfg.mqtt.tls.cert
    chain = Path(str(cfg.mqtt.tls.cert)).read_text()
    print(f"registration: {_report(cfg, 'provision.register', True, {'cert': chain, 'role': cfg.device.role})}")
    return 0


def _report(cfg: Any, cmd: str, ok: bool, body: dict[str, Any]) -> str:
    from provisioning.hubcall import call_hub

    tls = cfg.mqtt.tls
    if not (tls and tls.ca and tls.cert and tls.key):
        return "not sent (the config has no mutual TLS identity: provision the device first)"
    try:
        args = call_hub(cfg.mqtt.url, cfg.device.site, cfg.device.id,
                        (Path(str(tls.ca)), Path(str(tls.cert)), Path(str(tls.key))), cmd, ok, body,
                        prefix=cfg.mqtt.topic_prefix)
    except StepFailed as err:
        return f"NOT sent: {err} ({err.hint})"
    return "stored" if args.get("ok") else f"refused: {args.get('error')}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="venue-provision", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="group", required=True)
    ca = sub.add_parser("ca", help="The city/site certificate authority.").add_subparsers(dest="cmd", required=True)
    c = ca.add_parser("init", help="Create a CA (a site CA with --parent and --site).")
    c.add_argument("ca_dir", help="New CA directory (0700).")
    c.add_argument("--name", required=True, help="CA name, e.g. 'Hangzhou culture & tourism CA'.")
    c.add_argument("--parent", help="The city CA directory that signs this site CA.")
    c.add_argument("--site", help="Site this CA may issue devices for (site CAs only).")
    c.add_argument("--days", type=int, default=3650, help="Validity in days.")
    c.set_defaults(fn=cmd_ca_init)
    c = ca.add_parser("issue", help="A hub-side identity (_hub, _provision): key, chain and CA file.")
    c.add_argument("ca_dir", help="CA directory.")
    c.add_argument("--name", required=True, help="Identity, starting with '_' (the ACL knows _hub and _provision).")
    c.add_argument("--out", required=True, help="Directory for <name>.key, <name>.pem and ca.pem.")
    c.add_argument("--replace", action="store_true", help="Revoke a valid certificate of the same name.")
    c.set_defaults(fn=cmd_ca_issue)
    c = ca.add_parser("revoke", help="Revoke a certificate by serial (hex) or every one of a name.")
    c.add_argument("ca_dir", help="CA directory.")
    c.add_argument("what", help="Serial (hex) or device/identity name.")
    c.add_argument("--reason", default="unspecified", help="keyCompromise, superseded, cessationOfOperation, ...")
    c.set_defaults(fn=cmd_ca_revoke)
    c = ca.add_parser("crl", help="Issue the CRL again (before it expires).")
    c.add_argument("ca_dir", help="CA directory.")
    c.add_argument("--days", type=int, default=90, help="Validity of the CRL.")
    c.set_defaults(fn=cmd_ca_crl)
    c = ca.add_parser("list", help="Every certificate issued.")
    c.add_argument("ca_dir", help="CA directory.")
    c.add_argument("--json", action="store_true", help="Print JSON.")
    c.set_defaults(fn=cmd_ca_list)
    c = ca.add_parser("sign-usb", help="Offline: sign every device request on a USB stick.")
    c.add_argument("ca_dir", help="CA directory (usually the site CA on this laptop).")
    c.add_argument("usb", help="The stick's mount point (requests/ in, bundles/ out).")
    c.add_argument("--days", type=int, default=730, help="Certificate validity.")
    c.add_argument("--replace", action="store_true", help="Re-provisioning: revoke the device's old certificate.")
    c.set_defaults(fn=cmd_ca_sign_usb)

    br = sub.add_parser("broker", help="Generated mosquitto security.").add_subparsers(dest="cmd", required=True)
    c = br.add_parser("config", help="Write mosquitto.conf (+ mosquitto-claims.conf), ACLs, server cert, CRL.")
    c.add_argument("--ca", dest="ca_dir", required=True, help="City CA directory.")
    c.add_argument("--out", required=True, help="Output directory (0700).")
    c.add_argument("--host", default="localhost", help="The broker's name as clients use it (certificate CN/SAN).")
    c.add_argument("--dns", action="append", default=[], help="More DNS names for the certificate.")
    c.add_argument("--ip", action="append", default=["127.0.0.1"], help="Addresses for the certificate.")
    c.add_argument("--bind", default="", help="Address of the device and claim listeners (default: all).")
    c.add_argument("--device-port", type=int, default=8883, help="Devices' mutual-TLS port.")
    c.add_argument("--claim-port", type=int, default=8884, help="Claim broker's anonymous TLS port.")
    c.add_argument("--no-claims", action="store_true", help="No claim broker (offline bundles only).")
    c.add_argument("--service-port", type=int, default=8885, help="Hub services' port on the city broker.")
    c.add_argument("--claim-service-port", type=int, default=8886, help="Claim service's port on the claim broker.")
    c.add_argument("--service-bind", default="127.0.0.1", help="Address of the two service listeners.")
    c.add_argument("--max-packet-kb", type=int, default=2048, help="Largest MQTT packet (the sender is dropped).")
    c.add_argument("--user", default=None, help="System user mosquitto runs as (gets the key).")
    c.add_argument("--persistence", default=None, help="City broker persistence directory.")
    c.add_argument("--site-crl", action="append", default=[], help="A site CA's crl.pem to include.")
    c.set_defaults(fn=cmd_broker_config)
    c = br.add_parser("crl", help="Rewrite the broker's CRL file from the CA (then reload mosquitto).")
    c.add_argument("--ca", dest="ca_dir", required=True, help="City CA directory.")
    c.add_argument("--out", required=True, help="The broker directory from `broker config`.")
    c.add_argument("--site-crl", action="append", default=[], help="A site CA's crl.pem to include.")
    c.set_defaults(fn=cmd_broker_crl)
    from provisioning.nodes import add_nodes_parser

    add_nodes_parser(br)

    cl = sub.add_parser("claim", help="One-time claim tokens.").add_subparsers(dest="cmd", required=True)
    c = cl.add_parser("create", help="A token for one device (printed once).")
    c.add_argument("--db", help=DB_HELP)
    c.add_argument("--device", required=True, help="Device id the token is for.")
    c.add_argument("--site", required=True, help="Its site.")
    c.add_argument("--role", default=None, help="gate, toilet, kiosk, gateway.")
    c.add_argument("--ttl-h", type=float, default=24, help="Hours until the token expires.")
    c.set_defaults(fn=cmd_claim_create)
    c = cl.add_parser("list", help="Tokens and whether they were used.")
    c.add_argument("--db", help=DB_HELP)
    c.set_defaults(fn=cmd_claim_list)

    rg = sub.add_parser("registry", help="The hub's device registry.").add_subparsers(dest="cmd", required=True)
    c = rg.add_parser("list", help="Registered devices and refused unknown ones.")
    c.add_argument("--db", help=DB_HELP)
    c.add_argument("--json", action="store_true", help="Print JSON.")
    c.set_defaults(fn=cmd_registry_list)
    c = rg.add_parser("retire", help="Take a device out of service (its data is refused).")
    c.add_argument("--db", help=DB_HELP)
    c.add_argument("device", help="Device id.")
    c.set_defaults(fn=cmd_registry_retire)

    hb = sub.add_parser("hub", help="Hub-side services.").add_subparsers(dest="cmd", required=True)
    c = hb.add_parser("serve", help="The claim service: signs claims, registers devices, stores self-tests.")
    c.add_argument("--db", help=DB_HELP)
    c.add_argument("--ca", dest="ca_dir", required=True, help="The CA that signs claimed devices.")
    c.add_argument("--identity", required=True, help="Directory with ca.pem, <name>.pem, <name>.key (ca issue).")
    c.add_argument("--name", default="_provision", help="The service's identity.")
    c.add_argument("--claims", default="mqtts://localhost:8886", help="Claim broker's service listener ('' = none).")
    c.add_argument("--city", default="mqtts://localhost:8885", help="City broker's service listener ('' = none).")
    c.add_argument("--days", type=int, default=730, help="Validity of claimed certificates.")
    c.set_defaults(fn=cmd_hub_serve)

    dv = sub.add_parser("device", help="On the device.").add_subparsers(dest="cmd", required=True)
    c = dv.add_parser("provision", help="Key pair here, certificate by claim or USB bundle, config, label.")
    c.add_argument("--dir", default="/etc/edge-agent", help="Identity and config directory (0700).")
    c.add_argument("--ca", required=True, help="The city CA certificate (ca.pem).")
    c.add_argument("--broker", required=True, help="City broker for devices, mqtts://host:8883.")
    c.add_argument("--id", default=None, help="Device id (offline: required; online: checked against the token).")
    c.add_argument("--site", default=None, help="Site id (as --id).")
    c.add_argument("--role", default="gateway", help="gate, toilet, kiosk, gateway.")
    c.add_argument("--claim", default=None, help="Claim token (or $VENUE_CLAIM_TOKEN).")
    c.add_argument("--claim-url", default=None, help="Claim broker, mqtts://host:8884.")
    c.add_argument("--usb", default=None, help="Offline: the USB stick's mount point.")
    c.add_argument("--template", default=None, help="Agent config (TOML/YAML) to start from: producers etc.")
    c.add_argument("--label-png", default=None, help="Also write the label's QR code as PNG.")
    c.add_argument("--new-key", action="store_true", help="Make a new key pair even if one exists.")
    c.add_argument("--meta", action="append", default=[], help="KEY=VALUE facts sent with the claim.")
    c.add_argument("--hub-key-file", default=None, help="The hub's command public key (from `venue-hub command "
                   "keygen`); without it the device refuses every downlink command.")
    c.add_argument("--allowlist-key-file", default=None, help="Gates: the site's allow-list secret from the hub "
                   "(default: a new random one in <dir>/allowlist.key, to be given to the hub).")
    c.set_defaults(fn=cmd_device_provision)
    c = dv.add_parser("selftest", help="Pass/fail table of the device's readiness, also sent to the hub.")
    c.add_argument("--config", required=True, help="Agent config.")
    c.add_argument("--models", default=None, help="Models directory (default: the package's models/).")
    c.add_argument("--timeout", type=float, default=3.0, help="Seconds per device probe.")
    c.add_argument("--json", action="store_true", help="Print JSON.")
    c.add_argument("--no-report", action="store_true", help="Do not send the result to the hub.")
    c.set_defaults(fn=cmd_device_selftest)
    c = dv.add_parser("register", help="Register an offline-provisioned certificate at the hub.")
    c.add_argument("--config", required=True, help="Agent config.")
    c.set_defaults(fn=cmd_device_register)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except StepFailed:
        return 1  # already printed with its hint
    except ProvisioningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
