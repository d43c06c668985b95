"""Benchmark the MSDA op: ours vs our PyTorch reference vs mmcv's.

Prints a table and one JSON line with median times (forward, forward +
backward, milliseconds) and peak memory (MiB) per implementation and shape;
speed-ups are ratios within this run. On CUDA it adds mmcv's CUDA kernel when
mmcv's ``ext`` is importable and the forward bandwidth floor: the bytes the
op must move at least (read value, locations and weights once, write the
output) over the HBM bandwidth.

Peak memory is what one forward + backward needs above its inputs: on CPU
the peak resident set size (Linux ``VmHWM``, reset before the run) minus
the resident size before it, in a fresh process; on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before.

Usage::

    python benchmarks/bench_msda.py [--device cpu|cuda] [--dtype float32]
        [--shapes enc-640x480 dec-640x480 enc-800x1333] [--repeats 7]
"""
import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import statistics
import time

import torch

from ddetr_plugin.ops import (level_start_index, multi_scale_deformable_attn,
                              multi_scale_deformable_attn_pytorch)

LEVELS_640x480 = ((60, 80), (30, 40), (15, 20), (8, 10))
LEVELS_800x1333 = ((100, 167), (50, 84), (25, 42), (13, 21))
SHAPES = {
    # name: (levels, num_queries or None for one per value token)
    'enc-640x480': (LEVELS_640x480, None),
    'dec-640x480': (LEVELS_640x480, 300),
    'enc-800x1333': (LEVELS_800x1333, None),
}
BATCH, NUM_HEADS, HEAD_DIM, NUM_POINTS = 2, 8, 32, 4
# HBM bandwidth in GB/s by device-name fragment, for the bandwidth floor.
HBM_GBPS = {'H100 PCIe': 2000, 'H100': 3350, 'H200': 4800, 'A100': 2039}


def make_inputs(shape, device, dtype, seed=0):
    """Inputs shaped and distributed like Deformable DETR's.

    Sampling locations are what the model produces: each query's reference
    point plus offsets of a few pixels (normal, std 2 pixels of each level).
    Encoder queries are the value tokens themselves, whose reference points
    are their own pixel centres; decoder reference points are uniform.
    """
    levels, num_queries = SHAPES[shape]
    spatial_shapes = torch.tensor(levels, dtype=torch.long, device=device)
    num_value = int(spatial_shapes.prod(1).sum())
    gen = torch.Generator(device=device).manual_seed(seed)
    if num_queries is None:  # encoder: one query per pixel of every level
        centres = []
        for height, width in levels:
            ys, xs = torch.meshgrid(
                (torch.arange(height, device=device) + 0.5) / height,
                (torch.arange(width, device=device) + 0.5) / width,
                indexing='ij')
            centres.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        reference = torch.cat(centres).expand(BATCH, -1, -1)
    else:  # decoder: learned reference points anywhere on the image
        reference = torch.rand(BATCH, num_queries, 2, generator=gen,
                               device=device)
    num_queries = reference.shape[1]
    offsets = torch.randn(BATCH, num_queries, NUM_HEADS, len(levels),
                          NUM_POINTS, 2, generator=gen, device=device) * 2
    locations = (reference[:, :, None, None, None, :] +
                 offsets / spatial_shapes.flip(-1)[:, None, :]).to(dtype)
    value = torch.randn(BATCH, num_value, NUM_HEADS, HEAD_DIM,
                        generator=gen, device=device, dtype=dtype)
    weights = torch.rand(BATCH, num_queries, NUM_HEADS, len(levels),
                         NUM_POINTS, generator=gen, device=device,
                         dtype=dtype).softmax(-1)
    return (value, spatial_shapes, level_start_index(spatial_shapes),
            locations, weights)


def implementations(device):
    impls = {
        'ours': multi_scale_deformable_attn,
        'reference': lambda v, s, i, loc, w:
        multi_scale_deformable_attn_pytorch(v, s, loc, w),
    }
    try:
        from mmcv.ops import multi_scale_deform_attn as mmcv_msda
    except ImportError:
        return impls
    impls['mmcv-pytorch'] = lambda v, s, i, loc, w: \
        mmcv_msda.multi_scale_deformable_attn_pytorch(v, s, loc, w)
    if device == 'cuda':
        impls['mmcv-cuda'] = lambda v, s, i, loc, w: \
            mmcv_msda.MultiScaleDeformableAttnFunction.apply(
                v, s, i, loc, w, 64)
    return impls


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def run_once(fn, inputs, backward):
    value, spatial_shapes, starts, locations, weights = inputs
    if not backward:
        with torch.no_grad():
            return fn(*inputs)
    leaves = [t.detach().requires_grad_() for t in (value, locations,
                                                    weights)]
    out = fn(leaves[0], spatial_shapes, starts, leaves[1], leaves[2])
    out.backward(torch.ones_like(out))
    return out


def median_ms(fns, inputs, backward, device, repeats):
    """Median milliseconds of each of ``fns`` (name -> callable), the
    implementations alternated run by run so that all of them see the same
    load on a shared machine."""
    for fn in fns.values():
        run_once(fn, inputs, backward)  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            run_once(fn, inputs, backward)
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _status_kib(field):
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _cpu_peak_worker(name, shape, dtype, queue):
    inputs = make_inputs(shape, 'cpu', dtype)
    fn = implementations('cpu')[name]
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)  # free pages back to the OS
    before = _status_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak RSS (VmHWM) to the current RSS
    run_once(fn, inputs, backward=True)
    queue.put((_status_kib('VmHWM') - before) / 1024)  # KiB -> MiB


def peak_mib(name, shape, device, dtype):
    if device == 'cuda':
        inputs = make_inputs(shape, device, dtype)
        fn = implementations(device)[name]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_once(fn, inputs, backward=True)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_cpu_peak_worker,
                       args=(name, shape, dtype, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def bandwidth_floor_ms(inputs, device):
    name = torch.cuda.get_device_name()
    gbps = next((v for k, v in HBM_GBPS.items() if k in name), None)
    if gbps is None:
        return None
    value, _, _, locations, weights = inputs
    out_bytes = (value.element_size() * locations.shape[0] *
                 locations.shape[1] * value.shape[2] * value.shape[3])
    moved = sum(t.numel() * t.element_size()
                for t in (value, locations, weights)) + out_bytes
    return moved / (gbps * 1e9) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--dtype', default='float32',
                        choices=['float32', 'float64', 'float16', 'bfloat16'])
    parser.add_argument('--shapes', nargs='+', default=list(SHAPES),
                        choices=list(SHAPES))
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--impls', nargs='+', default=None,
                        help='subset of: ours reference mmcv-pytorch '
                        'mmcv-cuda')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurement')
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    impls = implementations(args.device)
    if args.impls:
        impls = {k: v for k, v in impls.items() if k in args.impls}
    if args.device == 'cpu':
        machine = f'cpu, {torch.get_num_threads()} threads'
    else:
        machine = torch.cuda.get_device_name()
    print(f'# MSDA benchmark on {machine}, {args.dtype}, B={BATCH}, '
          f'{NUM_HEADS} heads x {HEAD_DIM}, {NUM_POINTS} points, '
          f'median of {args.repeats}, implementations alternated')
    header = (f'{"shape":<14}{"impl":<14}{"fwd ms":>10}{"fwd+bwd ms":>12}'
              f'{"peak MiB":>10}{"fwd x":>8}{"fwd+bwd x":>11}')
    print(header)
    rows = []
    for shape in args.shapes:
        inputs = make_inputs(shape, args.device, dtype)
        forward = median_ms(impls, inputs, False, args.device, args.repeats)
        forward_backward = median_ms(impls, inputs, True, args.device,
                                     args.repeats)
        results = {
            name: dict(
                forward_ms=forward[name],
                forward_backward_ms=forward_backward[name],
                peak_mib=None if args.no_memory else peak_mib(
                    name, shape, args.device, dtype))
            for name in impls
        }
        baseline = next(name for name in ('mmcv-cuda', 'mmcv-pytorch',
                                          'reference', 'ours')
                        if name in results)
        for name, r in results.items():
            r['forward_speedup'] = (results[baseline]['forward_ms'] /
                                    r['forward_ms'])
            r['forward_backward_speedup'] = (
                results[baseline]['forward_backward_ms'] /
                r['forward_backward_ms'])
            peak = '-' if r['peak_mib'] is None else f'{r["peak_mib"]:.0f}'
            print(f'{shape:<14}{name:<14}{r["forward_ms"]:>10.2f}'
                  f'{r["forward_backward_ms"]:>12.2f}{peak:>10}'
                  f'{r["forward_speedup"]:>8.1f}'
                  f'{r["forward_backward_speedup"]:>11.1f}')
            rows.append(dict(shape=shape, impl=name, baseline=baseline, **r))
        if args.device == 'cuda':
            floor = bandwidth_floor_ms(inputs, args.device)
            if floor is not None:
                print(f'{shape:<14}{"bw floor":<14}{floor:>10.3f}  '
                      f'(ours fwd / floor = '
                      f'{results["ours"]["forward_ms"] / floor:.1f}x)')
                rows.append(dict(shape=shape, impl='bandwidth-floor',
                                 forward_ms=floor))
    print(json.dumps(dict(device=machine, dtype=args.dtype, results=rows)))


if __name__ == '__main__':
    main()
