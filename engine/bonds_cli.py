"""``ggzy bonds``: a project's bonds, sending its refund instructions, and the simulated bank for the demo.

- ``ggzy bonds status CODE`` lists every bond of a project at its bid deadline;
- ``ggzy bonds send-refunds CODE`` sends the refund instructions not yet acknowledged (retry-safe);
- ``ggzy bonds banksim`` serves the simulated bank (``engine.banksim``) with the demo bank's key from
  ``$GGZY_HOME/demo-bank/bank.key.pem`` until interrupted, so that the demo's refunds reach a bank.

``seed_demo_bonds`` approves the demo guarantee issuer (a certificate of the first demo CA, its key
under ``$GGZY_HOME/demo-guarantor/``) so that guarantees can be issued and verified in the demo.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from engine import bank, banksim, bond_overview, bond_refunds, bonds, clock, guarantees, pki
from engine.actors import SYSTEM
from engine.cli import _actor, _print, _when
from engine.context import Context
from engine.errors import EngineError
from engine.orgs import uscc_check_char

DEMO_BANK_KEY = Path("demo-bank") / "bank.key.pem"
DEMO_BANK_PORT = 8765
DEMO_GUARANTOR = Path("demo-guarantor")
DEMO_GUARANTOR_NAME = "甘肃省融资担保集团（演示）"
DEMO_GUARANTOR_USCC = "91620000MA7GGDB01" + uscc_check_char("91620000MA7GGDB01")


def seed_demo_bonds(session: Session, home: Path) -> pki.Issued:
    """Approve the demo guarantee issuer, creating its certificate (first demo CA) under ``home`` once."""
    folder = home / DEMO_GUARANTOR
    if (folder / "issuer.cert.pem").exists():
        issuer = pki.load_issued(folder, "issuer")
    else:
        demo = pki.seed_demo_pki(session, home)
        at = clock.now()
        issuer = pki.issue_certificate(demo.cas[0], common_name=f"{DEMO_GUARANTOR_NAME}保函专用", usage=("signature",),
                                       uscc=DEMO_GUARANTOR_USCC, not_before=at - timedelta(days=1),
                                       not_after=at + timedelta(days=1825))
        pki.save_issued(issuer, folder, "issuer")
    guarantees.approve_issuer(session, SYSTEM, uscc=DEMO_GUARANTOR_USCC, name=DEMO_GUARANTOR_NAME)
    return issuer


def cmd_bonds(ctx: Context, args: argparse.Namespace) -> int:
    return args.bonds_handler(ctx, args)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.sessions() as s:
        project = bond_overview.project_by_code(s, args.code)
        terms = bonds.project_terms(s, project.id)
        if terms.bid_deadline is None:
            raise EngineError(f"项目 {project.code} 尚未发布招标文件 (no bid deadline yet)")
        rows = [{"account": a.account_number, "bidder_id": a.bidder_id, "state": st.state, "amount": st.amount,
                 "required": st.required, "payer_account": st.payer_account, "flags": list(st.flags),
                 "detail": st.detail} for a, st in bonds.project_bonds(s, project.id, deadline=terms.bid_deadline)]
    _print(args, {"project": project.code, "deadline": _when(terms.bid_deadline), "bonds": rows},
           lambda: "\n".join([f"{project.code} bonds at {_when(terms.bid_deadline)}:"]
                             + [f"  {r['account']}  {r['state']:<9} {r['amount']}  {r['detail']}" for r in rows]))
    return 0


def cmd_send(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.sessions.begin() as s:
        project = bond_overview.project_by_code(s, args.code)
        rows = bond_refunds.send_refunds(s, project.id, config=ctx.config, actor=_actor(ctx, s, args))
        result = [{"instruction_id": r.instruction_id, "status": r.status, "amount": r.amount,
                   "bank_reference": r.bank_reference, "error": r.last_error} for r in rows]
    _print(args, result, lambda: "\n".join([f"sent {len(result)} refund instruction(s)"]
                                           + [f"  {r['instruction_id']}  {r['status']}  {r['error'] or ''}"
                                              for r in result]))
    return 0 if all(r["status"] == "acknowledged" for r in result) else 1


def cmd_banksim(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.config.home / DEMO_BANK_KEY
    if not path.exists():
        raise EngineError(f"no demo bank key at {path}: seed the demo first (`ggzy demo`)")
    sim = banksim.BankSim(args.code, bank.load_private_key(path.read_bytes()), args.platform,
                          pki.platform_public_pem(ctx.config).decode())
    server, thread = banksim.serve(sim, "127.0.0.1", args.port)
    print(f"simulated bank {args.code} on http://127.0.0.1:{server.server_port} (Ctrl-C stops it)")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def add_commands(command) -> None:
    """Register ``ggzy bonds`` and its subcommands."""
    parser = command("bonds", cmd_bonds, "bid bonds: status, refunds, the simulated bank", as_user=True)
    sub = parser.add_subparsers(dest="bonds_action", required=True)

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        p.add_argument("--as", dest="as_user", metavar="USER", default=argparse.SUPPRESS,
                       help="act as USER (default: the system actor)")
        p.set_defaults(bonds_handler=handler)
        return p

    action("status", cmd_status, "list a project's bonds at its bid deadline").add_argument("code")
    action("send-refunds", cmd_send, "send a project's refund instructions to the banks").add_argument("code")
    p = action("banksim", cmd_banksim, "serve the simulated demo bank")
    p.add_argument("--code", default="demo-bank")
    p.add_argument("--port", type=int, default=DEMO_BANK_PORT)
    p.add_argument("--platform", default="http://127.0.0.1:5000/bank/v1/notifications",
                   help="the platform's notification URL")
