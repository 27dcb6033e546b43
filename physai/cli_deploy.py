"""`physai export`, `physai distill`, `physai prune`, `physai push`: argument parsing and printing
only; the work is in `physai.export`, `physai.distill`, `physai.prune` and `physai.hub`."""

from __future__ import annotations

from physai.report import logger, print_table


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


def cmd_distill(args) -> int:
    import dataclasses

    from physai.distill import DistillConfig, distill
    from physai.overrides import apply_overrides

    base = DistillConfig() if args.student_preset is None else DistillConfig(student_preset=args.student_preset)
    cfg = apply_overrides(base, args.set or [])
    res = distill(args.teacher, args.out, cfg, data_root=args.data_root, log=logger("dim"))
    rows = [{"item": "teacher params", "value": f"{res['teacher_params'] / 1e6:.3f} M"},
            {"item": "student params", "value": f"{res['student_params'] / 1e6:.3f} M"},
            {"item": "ratio", "value": f"{res['ratio']:.1f}x"},
            {"item": "steps", "value": res["steps"]}, {"item": "wall time (s)", "value": f"{res['seconds']:.0f}"},
            {"item": "on-policy frames", "value": str(res["onpolicy_frames"])},
            {"item": "student", "value": res["student"]}]
    print_table(rows, f"physai distill ({dataclasses.asdict(cfg)['student_preset']} student)", ["item", "value"])
    return 0


def cmd_prune(args) -> int:
    from physai.prune import prune_checkpoint

    res = prune_checkpoint(args.checkpoint, args.out, args.keep, args.recipe, args.finetune_steps, args.lr,
                           data_root=args.data_root, keep_heads=args.keep_heads)
    print_table([{"item": k, "value": str(v)} for k, v in res.items()], "physai prune (trunk MLP channels, attention heads)",
                ["item", "value"])
    return 0


def cmd_push(args) -> int:
    from physai.hub import push_checkpoint

    url = push_checkpoint(args.checkpoint, args.repo_id, private=args.private)
    print_table([{"item": "checkpoint", "value": args.checkpoint}, {"item": "repo", "value": url}],
                "physai push", ["item", "value"])
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export one body of a checkpoint to ONNX or torch.export, with a parity check")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "torch-export"), default="onnx")
    p.add_argument("--embodiment", help="which body (default: the checkpoint's only one)")
    p.add_argument("--samples", type=int, default=16, help="random observations of the parity check")
    p.add_argument("--out", required=True, help="output file (.onnx / .pt2)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("distill", help="distil a teacher checkpoint into a small student (teacher actions + tokens + ground truth, on-policy rounds)")
    p.add_argument("--teacher", required=True)
    p.add_argument("--student-preset", help="trunk preset of the student (default: DistillConfig's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. steps=3000, rounds=2, teacher_fraction=0.5")
    p.add_argument("--data-root", help="where the data recipe's recordings are cached")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_distill)

    p = sub.add_parser("prune", help="structured pruning of the trunk's MLP channels and attention heads (magnitude criteria), then fine-tuning")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--keep", type=float, default=0.5, help="share of each block's MLP channels kept")
    p.add_argument("--keep-heads", type=float, default=1.0, help="share of each block's attention heads kept")
    p.add_argument("--recipe", default="sft", help="whose data fine-tunes the pruned model")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--data-root", help="where the recipe's recordings are cached")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_prune)

    p = sub.add_parser("push", help="upload a checkpoint (weights, config, normalization, model card) to the Hub")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--repo-id", required=True, help="Hub model repo, owner/name (created if missing)")
    p.add_argument("--private", action="store_true")
    p.set_defaults(fn=cmd_push)
