import sys, torch
from graphpress.backends.triton import ops
from graphpress.backends.triton.configs import LaunchConfig
from graphpress.backends.triton.layout import repack_for_kernels
from graphpress.backends.triton.reference import rtn_quantize
torch.manual_seed(0)
n, k = 4096, 4096
q = rtn_quantize(torch.randn(n, k, device="cuda") * 0.02, 4, 128)
w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 128, k, meta_dtype=torch.float16)
configs = {128: LaunchConfig(64, 128, 64, 4, 4, 4, pairs=True, swap_ab=True),
           16: LaunchConfig(16, 64, 128, 8, 4, 3, pairs=True, swap_ab=True)}
for m, cfg in configs.items():
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        ops._launch(x, w, cfg, out)
torch.cuda.synchronize()
print("done")
