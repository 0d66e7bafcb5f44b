"""The second implementations of enastool.nn.kernels compute what the native ops compute."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from enastool.nn.kernels import (
    AvgPool2d, DepthwiseConv2d, PointwiseConv2d, depthwise_weight_grad, native_kernels, set_kernels,
)
from enastool.train import device as dev

CL = torch.channels_last
# (channels, height, width, kernel, stride): odd and even sizes, both strides, kernels 3 to 7.
SHAPES = [(6, 9, 7, 5, 1), (6, 9, 7, 5, 2), (5, 8, 8, 3, 1), (5, 8, 8, 3, 2), (4, 5, 6, 7, 1),
          (4, 11, 11, 7, 2), (3, 4, 4, 5, 2)]


def outputs_and_grads(module, x, grad):
    y = module(x)
    return (y, *torch.autograd.grad(y, [x, *module.parameters()], grad))


def both_ways(module, x, grad_format=torch.contiguous_format):
    """(native results, cpu results) of ``module`` on ``x`` with one random output gradient."""
    set_kernels(module, "native")
    y = module(x)
    grad = torch.randn(y.shape, dtype=y.dtype).contiguous(memory_format=grad_format)
    native = outputs_and_grads(module, x, grad)
    set_kernels(module, "cpu")
    return native, outputs_and_grads(module, x, grad)


def make(kind, channels, kernel, stride):
    if kind == "depthwise":
        return DepthwiseConv2d(channels, kernel, stride)
    if kind == "pointwise":
        return PointwiseConv2d(channels, channels + 2)
    return AvgPool2d(3, stride)


@pytest.mark.parametrize("kind", ["depthwise", "pointwise", "avg_pool"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_kernels_match_the_native_ops_forward_and_backward(kind, shape):
    channels, height, width, kernel, stride = shape
    torch.manual_seed(0)
    module = make(kind, channels, kernel, stride).double()
    x = torch.randn(3, channels, height, width, dtype=torch.float64).contiguous(memory_format=CL)
    x.requires_grad_()
    for grad_format in (torch.contiguous_format, CL):
        native, cpu = both_ways(module, x, grad_format)
        assert len(native) == len(cpu) >= 2
        for a, b in zip(native, cpu):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert cpu[0].is_contiguous(memory_format=CL)


def test_depthwise_weight_grad_of_a_wide_kernel_in_float32():
    torch.manual_seed(1)
    x = torch.randn(8, 12, 16, 16).contiguous(memory_format=CL)
    for stride in (1, 2):
        weight = torch.randn(12, 1, 5, 5)
        out = F.conv2d(x, weight, None, stride, 2, 1, 12)
        grad = torch.randn_like(out).contiguous(memory_format=CL)
        reference = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [stride] * 2, [2, 2], [1, 1], False, [0, 0], 12, [False, True, False])[1]
        found = depthwise_weight_grad(grad, x, weight.shape, (stride, stride), (2, 2))
        torch.testing.assert_close(found, reference, rtol=1e-4, atol=1e-3)


def test_cpu_kernels_fall_back_to_the_native_ops_off_channels_last():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 6, 6)  # NCHW
    for module in (DepthwiseConv2d(4, 5), PointwiseConv2d(4, 3), AvgPool2d(3, 2)):
        native = module(x)
        set_kernels(module, "cpu")
        assert torch.equal(module(x), native)


def test_modules_have_the_parameters_and_initialisation_of_torch_convs():
    torch.manual_seed(3)
    ours = DepthwiseConv2d(6, 5, 2)
    torch.manual_seed(3)
    theirs = nn.Conv2d(6, 6, 5, 2, 2, groups=6, bias=False)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert torch.equal(ours.weight, theirs.weight)
    torch.manual_seed(4)
    pointwise = PointwiseConv2d(6, 8)
    torch.manual_seed(4)
    assert torch.equal(pointwise.weight, nn.Conv2d(6, 8, 1, bias=False).weight)
    assert dict(AvgPool2d(3).state_dict()) == {}


def test_set_kernels_and_native_kernels_switch_every_op():
    net = nn.Sequential(DepthwiseConv2d(4, 3), PointwiseConv2d(4, 4), nn.Sequential(AvgPool2d(3)))
    switchable = [m for m in net.modules() if hasattr(m, "kernels")]
    assert [m.kernels for m in switchable] == ["native"] * 3
    set_kernels(net, "cpu")
    assert [m.kernels for m in switchable] == ["cpu"] * 3
    with native_kernels(net):
        assert [m.kernels for m in switchable] == ["native"] * 3
    assert [m.kernels for m in switchable] == ["cpu"] * 3
    with pytest.raises(ValueError, match="kernels 'fast'"):
        set_kernels(net, "fast")


def test_flop_counting_sees_the_native_ops():
    from enastool.nn.counting import count_flops

    net = nn.Sequential(DepthwiseConv2d(4, 3), PointwiseConv2d(4, 4), AvgPool2d(3))
    native = count_flops(net, (4, 8, 8))
    dev.Placement(torch.device("cpu"), None, True, False, "cpu").prepare(net)
    assert count_flops(net, (4, 8, 8)) == native == 2 * 64 * (4 * 9 + 4 * 4)
    with FlopCounterMode(display=False) as counter, native_kernels(net):
        net(torch.zeros(1, 4, 8, 8).contiguous(memory_format=CL))
    assert counter.get_total_flops() == native


def test_prepare_places_the_network_and_tunes_the_host_once():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), DepthwiseConv2d(4, 3))
    placement = dev.resolve_placement(type("Config", (), {"device": "cpu"})())
    assert placement.prepare(net) is net
    assert net[0].weight.is_contiguous(memory_format=CL) and net[1].kernels == "cpu"
    tuned = dev.tune_host(torch.device("cpu"))
    assert dev.tune_host(torch.device("cpu")) is tuned  # once per process, then the same answer


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_networks_train_the_same_with_either_kernels(space, macro_final, micro_final):
    """A supernet and a final network: the same outputs and gradients with both kernels."""
    from enastool.encoding import MacroArch, MicroArch
    from enastool.nn.final import build_final_network
    from enastool.nn.supernet import MacroSupernet, MicroSupernet

    torch.manual_seed(5)
    if space == "macro":
        supernet = MacroSupernet(num_layers=6, channels=4, keep_prob=1.0)
        child = MacroArch.sample(0, num_layers=6)
        final = build_final_network(macro_final, channels=4, keep_prob=1.0)
    else:
        supernet = MicroSupernet(num_layers=3, channels=4, num_blocks=5, keep_prob=1.0)
        child = MicroArch.sample(0, num_blocks=5)
        final = build_final_network(micro_final, layers=3, channels=4, keep_prob=1.0, aux_head=False)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=CL)
    for net, run in ((supernet, lambda n: n(x, child)), (final, lambda n: n(x)[0])):
        net = net.double().to(memory_format=CL).train()
        results = []
        for kernels in ("native", "cpu"):
            set_kernels(net, kernels)
            torch.manual_seed(6)  # the same dropout masks both times
            out = run(net)
            grads = torch.autograd.grad(out.square().sum(), list(net.parameters()), allow_unused=True)
            results.append([out, *(g for g in grads if g is not None)])
        assert len(results[0]) == len(results[1]) > 10
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
