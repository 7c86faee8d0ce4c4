"""Training throughput (issue 3): images/s of training steps, lowered vs hand-written, on CPU (2 threads)
for MgNet width 16/32/64 and a ResNet-18 scaled to the same parameter count; on a GPU (--device cuda)
the full-width Table 2 models at batch 128 and 512, bf16 autocast, channels_last, compile on/off.

    python tools/bench_train.py                 # CPU
    python tools/bench_train.py --device cuda   # GPU
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

import mgdsl  # noqa: E402
from reference import HandMgNet, HandResNet18  # noqa: E402


def throughput(model, batch, steps, device, amp=False, channels_last=False, compile=False):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device, torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def paired(a_model, b_model, args, rounds=3):
    """Alternate the two models and keep each one's best round: order and warm-up effects cancel."""
    a = b = 0.0
    for _ in range(rounds):
        a = max(a, throughput(a_model, args.batch, args.steps, "cpu"))
        b = max(b, throughput(b_model, args.batch, args.steps, "cpu"))
    return a, b


def matched_resnet_width(params: int) -> int:
    best = min(range(2, 65), key=lambda w: abs(mgdsl.compile_ir(str(ROOT / "specs/table2/resnet18.mg"),
                                                                 width=w).total_params - params))
    return best


def cpu(args):
    torch.set_num_threads(2)
    spec = str(ROOT / "specs/mgnet.mg")
    print(f"CPU, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps (images/s)")
    print("model                      params    lowered   hand-written  ratio")
    for width in (16, 32, 64):
        lowered = mgdsl.load(spec, width=width)
        n = sum(p.numel() for p in lowered.parameters())
        a, b = paired(lowered, HandMgNet(width, width), args)
        print(f"MgNet width {width:<3}           {n:>9,}  {a:8.1f}  {b:10.1f}    {a / b:.3f}")
        w = matched_resnet_width(n)
        res = mgdsl.load(str(ROOT / "specs/table2/resnet18.mg"), width=w)
        n2 = sum(p.numel() for p in res.parameters())
        a, b = paired(res, HandResNet18(width=w), args)
        print(f"ResNet-18 width {w:<3}         {n2:>9,}  {a:8.1f}  {b:10.1f}    {a / b:.3f}")


def gpu(args):
    print(f"GPU {torch.cuda.get_device_name()}, bf16 autocast, channels_last (images/s)")
    for spec in ("table2/resnet18.mg", "table2/mgnet-256-256-pi0.mg", "table2/mgnet-256-256-pi1.mg",
                 "table2/mgnet-256-512-pi1.mg", "table2/mgnet-256-512-pi2.mg"):
        for batch in (128, 512):
            for comp in (False, True):
                m = mgdsl.load(str(ROOT / "specs" / spec))
                r = throughput(m, batch, args.steps, "cuda", amp=True, channels_last=True, compile=comp)
                print(f"{spec:34} batch {batch:4} compile {str(comp):5}  {r:10.0f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    gpu(a) if a.device == "cuda" else cpu(a)
