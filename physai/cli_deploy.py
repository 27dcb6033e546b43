"""`physai export`: argument parsing and printing only; the work is in `physai.export`."""

from __future__ import annotations

from physai.report import console, print_table


def cmd_export(args) -> int:
    import numpy as np

    from physai.errors import ConfigError
    from physai.export import export_policy, parity
    from physai.policy import Policy

    policy = Policy.from_pretrained(args.checkpoint)
    emb = args.embodiment or (policy.config.embodiments[0] if len(policy.specs) == 1 else None)
    if emb is None:
        raise ConfigError(f"--embodiment is needed: the checkpoint has {sorted(policy.specs)}")
    out = export_policy(policy, emb, args.out, args.format)
    err = parity(policy, emb, out, args.format, samples=args.samples)
    print_table([{"item": "embodiment", "value": emb}, {"item": "format", "value": args.format},
                 {"item": "file", "value": str(out)}, {"item": "metadata", "value": f"{out}.json"},
                 {"item": f"max |action - eager| ({args.samples} random observations)", "value": f"{err:.2e}"}],
                "physai export", ["item", "value"])
    return 0 if np.isfinite(err) else 1


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export one body of a checkpoint to ONNX or torch.export, with a parity check")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "torch-export"), default="onnx")
    p.add_argument("--embodiment", help="which body (default: the checkpoint's only one)")
    p.add_argument("--samples", type=int, default=16, help="random observations of the parity check")
    p.add_argument("--out", required=True, help="output file (.onnx / .pt2)")
    p.set_defaults(fn=cmd_export)
