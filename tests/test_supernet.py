"""Shared building blocks and the macro and micro supernets: the sampled thing is the thing run."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from enastool.encoding import Block, Cell, MacroArch, MacroLayer, MacroOp, MicroArch, MicroOp
from enastool.errors import EnasError
from enastool.nn.blocks import (
    Calibrate,
    ConvBN,
    FactorizedReduce,
    GhostBatchNorm2d,
    MacroBranch,
    SepConv,
    macro_reduction_positions,
    micro_op,
    micro_reduction_positions,
)
from enastool.nn.supernet import (
    MacroSupernet,
    MicroSupernet,
    draw_kept_paths,
    path_drop_rate,
)

CHANNELS = 4
MACRO_LAYERS = 4  # reductions after layers 0 and 1
MICRO_LAYERS = 3  # cells: N R N R N
BLOCKS = 2
BATCH = 3
CLASSES = 10


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def images(batch=BATCH, channels=1, size=8, seed=1):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def macro_net(**kw):
    kw = {"num_layers": MACRO_LAYERS, "channels": CHANNELS, "in_channels": 1, **kw}
    return MacroSupernet(**kw)


def micro_net(**kw):
    kw = {"num_layers": MICRO_LAYERS, "channels": CHANNELS, "num_blocks": BLOCKS, "in_channels": 1, **kw}
    return MicroSupernet(**kw)


def macro_arch(ops, skips=None):
    """``ops`` per layer; ``skips`` maps layer -> skip sources (indices into prev)."""
    skips = skips or {}
    return MacroArch(
        tuple(
            MacroLayer(op, tuple(int(m in skips.get(k, ())) for m in range(k)))
            for k, op in enumerate(ops)
        )
    )


def micro_arch(op=MicroOp.SEP3, index=1):
    # node 2 = op(0) + op(1); node 3 = op(index) + op(2)
    cell = Cell((Block(0, op, 1, op), Block(index, op, 2, op)))
    return MicroArch(cell, cell)


def backward(net, logits):
    net.zero_grad(set_to_none=True)
    F.cross_entropy(logits, torch.arange(len(logits)) % CLASSES).backward()


def grads_nonzero(module):
    params = list(module.parameters())
    return all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def grads_none(module):
    return all(p.grad is None for p in module.parameters())


def every_path(net):
    return [tuple(range(k)) for k in net.oneshot_fan_ins()]


def kept_paths(net, drop_rate, seed):
    return draw_kept_paths(net.oneshot_fan_ins(), drop_rate, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------- blocks
def test_factorized_reduce_halves_odd_sizes_and_sees_the_shifted_pixels():
    fr = FactorizedReduce(4, 5).eval()
    assert fr(torch.randn(2, 4, 7, 7)).shape == (2, 5, 4, 4)
    # A pixel at an odd position is skipped by the plain stride-2 conv; the shifted one sees it.
    x = torch.zeros(1, 4, 8, 8)
    x[:, :, 1, 1] = 1.0
    out = fr(x)
    assert not torch.allclose(out, fr(torch.zeros_like(x)))
    assert torch.equal(out[:, :2], fr(torch.zeros_like(x))[:, :2])  # first half: unshifted


def test_factorized_reduce_has_no_relu_but_calibration_puts_one_in_front():
    # The authors' _factorized_reduction reduces the raw tensor: negative inputs count.
    fr = FactorizedReduce(4, 4).eval()
    x = -torch.rand(2, 4, 8, 8)
    assert not torch.allclose(fr(x), fr(torch.relu(x)))
    calibrate = Calibrate(4, 4, reduce=True).eval()
    relu, reduce = calibrate.op
    assert isinstance(relu, nn.ReLU) and isinstance(reduce, FactorizedReduce)
    assert torch.allclose(calibrate(x), reduce(torch.zeros_like(x)))  # ReLU of negatives: zeros


def test_sep_conv_strides_first_depthwise_and_widens_first_pointwise():
    sep = SepConv(4, 6, kernel=5, stride=2, repeats=2)
    convs = [m for m in sep if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.groups, c.stride[0], c.kernel_size[0]) for c in convs] == [
        (4, 4, 4, 2, 5), (4, 6, 1, 1, 1), (6, 6, 6, 1, 5), (6, 6, 1, 1, 1),
    ]
    assert sep(torch.randn(2, 4, 8, 8)).shape == (2, 6, 4, 4)


def test_macro_branch_builds_true_separable_convs_and_real_pools():
    def layer_types(op):
        return [type(m).__name__ for m in MacroBranch(op, 4, 6)]

    sep = MacroBranch(MacroOp.SEP5, 4, 6)
    assert any(isinstance(m, nn.Conv2d) and m.groups == 6 and m.kernel_size == (5, 5) for m in sep)
    conv = MacroBranch(MacroOp.CONV3, 4, 6)
    assert [m.groups for m in conv if isinstance(m, nn.Conv2d)] == [1, 1]
    assert layer_types(MacroOp.AVG3) == ["PointwiseConv2d", "BatchNorm2d", "ReLU", "AvgPool2d"]
    assert layer_types(MacroOp.MAX3) == ["PointwiseConv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert MacroBranch(MacroOp.AVG3, 4, 6)[-1].count_include_pad is False


def test_micro_identity_is_identity_at_stride_1_and_factorized_reduce_at_stride_2():
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(micro_op(MicroOp.IDENTITY, 4, 1)(x), x)
    assert isinstance(micro_op(MicroOp.IDENTITY, 4, 2), FactorizedReduce)
    for op in MicroOp:
        assert micro_op(op, 4, 2)(x).shape == (2, 4, 4, 4)
        assert micro_op(op, 4, 1)(x).shape == (2, 4, 8, 8)


def test_calibrate_reduces_then_matches_width_then_passes_through():
    assert isinstance(Calibrate(4, 8, reduce=True).op[1], FactorizedReduce)
    assert isinstance(Calibrate(4, 8, reduce=False).op, ConvBN)
    assert isinstance(Calibrate(8, 8, reduce=False).op, nn.Identity)


def test_reduction_positions_follow_the_authors_layouts():
    assert macro_reduction_positions(12) == (3, 7)
    assert macro_reduction_positions(24) == (7, 15)
    assert micro_reduction_positions(6) == (1, 3)
    assert micro_reduction_positions(15) == (4, 9)
    with pytest.raises(EnasError, match="at least 3"):
        macro_reduction_positions(2)


@pytest.mark.parametrize("layers", range(3, 31))
def test_reduction_positions_are_the_authors_formula_for_every_layer_count(layers):
    # general_child.py: pool_layers = [d - 1, 2d - 1] with d = N // 3 (layers after which to reduce)
    d = layers // 3
    assert macro_reduction_positions(layers) == (d - 1, 2 * d - 1)
    # micro_child.py: pool_layers = [d, 2d + 1] among the L + 2 cells; translated to the normal
    # cells after which a reduction cell comes, that is the same pair.
    layout = []
    for cell in range(layers + 2):
        layout.append(cell in (d, 2 * d + 1))
    normals_before = [layout[:i].count(False) for i, reduce in enumerate(layout) if reduce]
    assert micro_reduction_positions(layers) == tuple(n - 1 for n in normals_before)


def test_layer_counts_that_are_not_multiples_of_three_give_the_extra_layers_to_the_last_stage():
    assert macro_reduction_positions(14) == (3, 7)  # not (3, 8): 4, 4 and 6 layers per stage
    net = micro_net(num_layers=8)
    assert [c.reduce for c in net.cells] == [False, False, True, False, False, True] + [False] * 4


# ----------------------------------------------------------------- macro: the sampled op runs
def test_macro_layer_0_is_its_branch_alone_and_later_layers_sum_then_normalise():
    net = macro_net()
    assert net.layers[0].bn is None
    assert all(isinstance(layer.bn, nn.BatchNorm2d) for layer in net.layers[1:])
    seen = {}
    net.branch(0, MacroOp.CONV3).register_forward_hook(lambda m, i, out: seen.update(branch=out))
    net.reductions[0][1].register_forward_hook(lambda m, inp, out: seen.update(layer0=inp[0]))
    net(images(), macro_arch([MacroOp.CONV3] * MACRO_LAYERS, {3: (1,)}))  # layer 3 reads layer 0
    assert torch.equal(seen["layer0"], seen["branch"])


@pytest.mark.parametrize("op", list(MacroOp), ids=lambda op: op.short)
def test_macro_only_the_sampled_branch_gets_gradients(op):
    net = macro_net()
    backward(net, net(images(), macro_arch([op] * MACRO_LAYERS)))
    for k in range(MACRO_LAYERS):
        for other in MacroOp:
            check = grads_nonzero if other is op else grads_none
            assert check(net.branch(k, other)), (k, other)


def test_macro_pool_and_conv_ops_give_different_outputs():
    # The authors' search ran max pooling whatever was sampled; here each op really runs.
    net = macro_net().eval()
    x = images()
    outs = {
        op: net(x, macro_arch([MacroOp.CONV3, op, MacroOp.CONV3, MacroOp.CONV3]))
        for op in (MacroOp.AVG3, MacroOp.MAX3, MacroOp.CONV3)
    }
    assert all(torch.isfinite(o).all() for o in outs.values())
    assert not torch.allclose(outs[MacroOp.AVG3], outs[MacroOp.MAX3])
    assert not torch.allclose(outs[MacroOp.AVG3], outs[MacroOp.CONV3])
    assert not torch.allclose(outs[MacroOp.MAX3], outs[MacroOp.CONV3])


def test_macro_flipping_one_skip_bit_changes_the_output():
    net = macro_net().eval()
    ops = [MacroOp.SEP3] * MACRO_LAYERS
    x = images()
    assert not torch.allclose(net(x, macro_arch(ops)), net(x, macro_arch(ops, {3: (2,)})))


def test_macro_skip_from_the_stem_trains_its_factorized_reduces_only_when_set():
    net = macro_net()
    ops = [MacroOp.CONV3] * MACRO_LAYERS
    stem_reducers = [net.reductions[r][0] for r in range(2)]  # stem at both reductions

    backward(net, net(images(), macro_arch(ops)))
    assert all(grads_none(fr) for fr in stem_reducers)

    backward(net, net(images(), macro_arch(ops, {3: (0,)})))  # layer 3 skips from the stem
    assert all(grads_nonzero(fr) for fr in stem_reducers)


def test_macro_reduces_8x8_inputs_to_2x2_at_constant_width():
    net = macro_net()
    seen = []
    net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    net(images(), MacroArch.sample(0, MACRO_LAYERS))
    assert seen == [(BATCH, CHANNELS, 2, 2)]


def test_macro_supernet_refuses_an_architecture_of_the_wrong_size_or_space():
    net = macro_net()
    with pytest.raises(EnasError, match="4 layers but the architecture has 5"):
        net(images(), MacroArch.sample(0, 5))
    with pytest.raises(EnasError, match="expected a macro architecture"):
        net(images(), micro_arch())


# ----------------------------------------------------------------- micro: the sampled op runs
def micro_sampled(arch_cell):
    """(node, slot, input, op) of every branch a cell's blocks use."""
    return {
        (j + 2, slot, index, op)
        for j, block in enumerate(arch_cell.blocks)
        for slot, (index, op) in enumerate(block.branches)
    }


@pytest.mark.parametrize("op", list(MicroOp), ids=lambda op: op.short)
def test_micro_only_the_sampled_ops_get_gradients(op):
    net = micro_net()
    arch = micro_arch(op)
    backward(net, net(images(), arch))
    checked = 0
    for cell in net.cells:
        sampled = micro_sampled(arch.reduce if cell.reduce else arch.normal)
        for node in range(2, BLOCKS + 2):
            for slot in range(2):
                for index in range(node):
                    for other in MicroOp:
                        module = cell.op(node, slot, index, other)
                        if (node, slot, index, other) in sampled:
                            assert grads_nonzero(module), (node, slot, index, other)
                            checked += sum(1 for _ in module.parameters())
                        else:
                            assert grads_none(module), (node, slot, index, other)
    if op in (MicroOp.SEP3, MicroOp.SEP5, MicroOp.IDENTITY):  # these have weights somewhere
        assert checked > 0


def test_micro_block_with_the_same_branch_twice_runs_two_modules():
    # Block (1, sep3, 1, sep3): the x and y slots have their own weights, as in the final net.
    net = micro_net()
    cell = Cell((Block(1, MicroOp.SEP3, 1, MicroOp.SEP3), Block(2, MicroOp.SEP5, 0, MicroOp.AVG3)))
    backward(net, net(images(), MicroArch(cell, cell)))
    x_slot, y_slot = (net.cells[0].op(2, slot, 1, MicroOp.SEP3) for slot in (0, 1))
    assert x_slot is not y_slot
    assert grads_nonzero(x_slot) and grads_nonzero(y_slot)
    assert not torch.equal(x_slot[1].weight.grad, y_slot[1].weight.grad)
    both = sum(p.numel() for p in x_slot.parameters()) + sum(p.numel() for p in y_slot.parameters())
    assert both == 2 * sum(p.numel() for p in SepConv(CHANNELS, CHANNELS, 3).parameters())


def test_micro_flipping_one_input_index_or_one_op_changes_the_output():
    net = micro_net().eval()
    x = images()
    base = net(x, micro_arch(MicroOp.SEP3, index=1))
    assert not torch.allclose(base, net(x, micro_arch(MicroOp.SEP3, index=0)))
    cell = Cell((Block(0, MicroOp.SEP3, 1, MicroOp.SEP3), Block(1, MicroOp.SEP3, 2, MicroOp.MAX3)))
    one_op = MicroArch(cell, micro_arch(MicroOp.SEP3).reduce)
    assert not torch.allclose(base, net(x, one_op))


def test_micro_pool_ops_give_different_outputs():
    net = micro_net().eval()
    x = images()
    avg, mx, ident = (net(x, micro_arch(op)) for op in (MicroOp.AVG3, MicroOp.MAX3, MicroOp.IDENTITY))
    assert not torch.allclose(avg, mx)
    assert not torch.allclose(avg, ident)


def test_micro_loose_input_node_of_a_reduction_cell_is_factorized_reduced():
    net = micro_net()
    # Node 0 is never read, so it is a loose end and must be brought to the output size.
    cell = Cell((Block(1, MicroOp.SEP3, 1, MicroOp.AVG3), Block(2, MicroOp.SEP3, 1, MicroOp.MAX3)))
    assert cell.loose_ends == (0, 3)
    backward(net, net(images(), MicroArch(cell, cell)))
    reduction_cells = [c for c in net.cells if c.reduce]
    assert len(reduction_cells) == 2
    assert all(grads_nonzero(c.shrink[0]) and grads_none(c.shrink[1]) for c in reduction_cells)


def test_micro_channels_double_at_each_reduction_and_8x8_becomes_2x2():
    net = micro_net()
    seen = []
    net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    net(images(), MicroArch.sample(0, BLOCKS))
    assert [c.reduce for c in net.cells] == [False, True, False, True, False]
    assert seen == [(BATCH, 4 * CHANNELS, 2, 2)]


def test_micro_head_applies_relu_before_pooling_and_macro_head_does_not():
    # The authors' micro children (search and final) end with ReLU, pool; the macro child pools.
    seen = {}
    micro, macro = micro_net(keep_prob=1.0), macro_net(keep_prob=1.0)
    micro.head.linear.register_forward_hook(lambda m, inp, out: seen.update(micro=inp[0]))
    macro.head.linear.register_forward_hook(lambda m, inp, out: seen.update(macro=inp[0]))
    micro(images(), micro_arch())
    macro(images(), macro_arch([MacroOp.CONV3] * MACRO_LAYERS, {2: (0,), 3: (0, 1)}))
    assert (seen["micro"] >= 0).all() and seen["micro"].abs().sum() > 0
    assert (seen["macro"] < 0).any()  # pooled BN output, negative means kept


def test_micro_supernet_refuses_an_architecture_with_another_block_count():
    with pytest.raises(EnasError, match="2 blocks per cell but the architecture has 3"):
        micro_net()(images(), MicroArch.sample(0, 3))


# ----------------------------------------------------------------- batch norm
@pytest.mark.parametrize("make,arch", [(macro_net, MacroArch.sample(0, MACRO_LAYERS)), (micro_net, micro_arch())])
def test_supernet_batch_norm_always_uses_batch_statistics(make, arch):
    net = make(keep_prob=1.0)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not m.track_running_stats and m.running_mean is None for m in norms)
    assert not any("running" in key for key in net.state_dict())
    x = images(batch=4)
    train_logits = net.train()(x, arch)
    eval_logits = net.eval()(x, arch)
    # Eval mode scores a candidate with its own batch statistics, exactly as in training.
    assert torch.allclose(train_logits, eval_logits, atol=1e-6)
    # ... so an image's logits depend on the rest of its batch.
    assert not torch.allclose(net(x[:2], arch), eval_logits[:2], atol=1e-4)


# ----------------------------------------------------------------- ghost batch norm
def test_ghost_batch_norm_normalises_each_ghost_batch_with_its_own_statistics():
    norm = GhostBatchNorm2d(3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(8, 3, 4, 4) * torch.arange(1, 9).view(8, 1, 1, 1)
    whole = norm(x)
    norm.ghost_batch_size = 2
    ghosts = norm(x)
    reference = nn.BatchNorm2d(3, track_running_stats=False)
    reference.load_state_dict(norm.state_dict())
    expected = torch.cat([reference(part) for part in x.split(2)])
    assert torch.allclose(ghosts, expected, atol=1e-6)
    assert not torch.allclose(ghosts, whole, atol=1e-3)
    assert torch.allclose(norm(x[:2]), expected[:2], atol=1e-6)  # a batch no larger than a ghost
    assert norm.eval()(x).equal(ghosts)  # the same statistics when scoring


@pytest.mark.parametrize("make,arch", [(macro_net, MacroArch.sample(0, MACRO_LAYERS)), (micro_net, micro_arch())])
def test_supernet_ghost_batches_make_an_image_independent_of_other_ghosts(make, arch):
    net = make(keep_prob=1.0, ghost_batch_size=2)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, GhostBatchNorm2d) and m.ghost_batch_size == 2 for m in norms)
    assert not any("ghost" in key for key in net.state_dict())
    x = images(batch=4)
    changed = x.clone()
    changed[2:] = images(batch=2, seed=7)  # only the second ghost differs
    assert torch.allclose(net(x, arch)[:2], net(changed, arch)[:2], atol=1e-6)
    net.set_ghost_batch_size(0)  # one batch: the first ghost now sees the rest of the batch
    assert not torch.allclose(net(x, arch)[:2], net(changed, arch)[:2], atol=1e-4)
    with pytest.raises(EnasError, match="ghost_batch_size"):
        make(ghost_batch_size=-1)


# ----------------------------------------------------------------- one-shot
def test_path_drop_rate_is_r_to_the_one_over_fan_in():
    assert path_drop_rate(0.0, 5) == 0.0
    assert path_drop_rate(0.5, 1) == 0.5
    assert path_drop_rate(0.25, 2) == pytest.approx(0.5)
    assert path_drop_rate(0.5, 4) ** 4 == pytest.approx(0.5)  # all 4 dropped with probability r
    with pytest.raises(EnasError, match="drop_rate"):
        path_drop_rate(1.5, 3)


def test_draw_kept_paths_scales_the_rate_with_fan_in_and_keeps_at_least_one():
    gen = torch.Generator().manual_seed(0)
    assert draw_kept_paths((1, 3, 7), 0.0, gen) == [(0,), (0, 1, 2), tuple(range(7))]
    for node in draw_kept_paths((1, 2, 7) * 50, 1.0, gen):
        assert len(node) == 1  # everything dropped: one survivor per node
    survivors = {draw_kept_paths((4,), 1.0, gen)[0] for _ in range(200)}
    assert survivors == {(0,), (1,), (2,), (3,)}  # any path can be the survivor
    r, nodes = 0.3, 20000
    for k in (2, 6):
        kept = draw_kept_paths((k,) * nodes, r, gen)
        q = r ** (1 / k)  # per-path drop rate
        # Each path is kept with probability 1 - q; a node that lost all k (probability r)
        # keeps one: the expected count is k(1 - q) + r.
        mean = sum(len(node) for node in kept) / nodes
        assert mean == pytest.approx(k * (1 - q) + r, abs=0.03)
        singles = sum(len(node) == 1 for node in kept) / nodes
        assert singles == pytest.approx(r + k * (1 - q) * q ** (k - 1), abs=0.015)
    again = torch.Generator().manual_seed(5)
    assert draw_kept_paths((5, 9), 0.4, again) == draw_kept_paths((5, 9), 0.4, torch.Generator().manual_seed(5))


def test_oneshot_fan_ins_count_every_path_into_every_node():
    assert macro_net().oneshot_fan_ins() == tuple(6 + k for k in range(MACRO_LAYERS))
    # micro: one choice per slot (x, y) of nodes 2 and 3, each (node) inputs x 5 ops, 5 cells
    assert micro_net().oneshot_fan_ins() == (2 * 5, 2 * 5, 3 * 5, 3 * 5) * 5


@pytest.mark.parametrize("make", [macro_net, micro_net])
def test_oneshot_trains_every_weight_with_every_path_and_survives_one_path_per_node(make):
    net = make()
    backward(net, net.forward_oneshot(images(), every_path(net)))
    unused = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unused == []
    out = net.forward_oneshot(images(), kept_paths(net, 1.0, seed=0))
    assert out.shape == (BATCH, CLASSES) and torch.isfinite(out).all()


def test_macro_oneshot_runs_only_the_kept_branches_and_skips():
    net = macro_net()
    # layer 3 keeps branch 2 and the skip from prev[1]; the others keep branch 0 only
    kept = [(0,), (0,), (0,), (2, 6 + 1)]
    backward(net, net.forward_oneshot(images(), kept))
    for k, paths in enumerate(kept):
        for op in MacroOp:
            check = grads_nonzero if op.enas_id in paths else grads_none
            assert check(net.branch(k, op)), (k, op)
    # prev[1] (layer 0) is read after both reductions: its reducers train; the stem's do not
    assert all(grads_nonzero(net.reductions[r][1]) for r in range(2))
    assert all(grads_none(net.reductions[r][0]) for r in range(2))
    arch = macro_arch([MacroOp.CONV3, MacroOp.CONV3, MacroOp.CONV3, MacroOp.CONV5], {3: (1,)})
    x = images()
    assert torch.allclose(net.eval().forward_oneshot(x, kept), net(x, arch))  # one path each: a candidate


def test_micro_oneshot_keeps_a_path_in_every_slot_and_trains_only_the_kept_modules():
    net = micro_net()
    kept = kept_paths(net, 1.0, seed=1)  # r = 1: every slot keeps exactly one path
    assert all(len(choice) == 1 for choice in kept)
    backward(net, net.forward_oneshot(images(), kept))
    cell = net.cells[0]
    picked = {}
    for c, (choice,) in enumerate(kept[:4]):  # the first cell: node 2 x, y; node 3 x, y
        node, slot = 2 + c // 2, c % 2
        picked[(node, slot)] = cell.paths[node - 2][choice]
    for node in (2, 3):
        for slot in (0, 1):
            for index in range(node):
                for op in MicroOp:
                    module = cell.op(node, slot, index, op)
                    if picked[(node, slot)] == (index, op.enas_id):
                        assert not list(module.parameters()) or grads_nonzero(module)
                    else:
                        assert grads_none(module), (node, slot, index, op)


def test_micro_oneshot_with_one_path_per_slot_equals_the_candidate_up_to_the_output_combine():
    net = micro_net().eval()
    cell_paths = net.cells[0].paths
    arch = micro_arch(MicroOp.SEP5, index=0)  # node 2 = sep5(0) + sep5(1); node 3 = sep5(0) + sep5(2)
    per_cell = []
    for j, block in enumerate(arch.normal.blocks):
        for index, op in block.branches:  # slot x, then slot y
            per_cell.append((cell_paths[j].index((index, op.enas_id)),))
    seen = {}
    net.cells[0].out_convs[3].register_forward_hook(lambda m, inp, out: seen.setdefault("oneshot", inp[0]))
    net.forward_oneshot(images(), per_cell * len(net.cells))
    net.cells[0].out_convs[3].register_forward_hook(lambda m, inp, out: seen.setdefault("arch", inp[0]))
    net(images(), arch)
    assert torch.allclose(seen["oneshot"], seen["arch"])  # node 3 of the first cell, before the combine


@pytest.mark.parametrize("make", [macro_net, micro_net])
def test_oneshot_path_dropout_is_reproducible_with_a_generator(make):
    net = make().eval()  # eval: head dropout off, so only path dropout is random
    x = images()

    def run(seed):
        return net.forward_oneshot(x, kept_paths(net, 0.5, seed))

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


@pytest.mark.parametrize(
    "make,sample",
    [(macro_net, lambda s: MacroArch.sample(s, MACRO_LAYERS)), (micro_net, lambda s: MicroArch.sample(s, BLOCKS))],
)
def test_candidates_can_be_ranked_after_oneshot_training(make, sample):
    net = make()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = images(batch=4), torch.tensor([0, 1, 2, 3])
    before = net.stem[0].weight.detach().clone()
    for step in range(3):
        opt.zero_grad()
        F.cross_entropy(net.forward_oneshot(x, kept_paths(net, 0.5, step)), y).backward()
        opt.step()
    assert not torch.equal(before, net.stem[0].weight)
    net.eval()
    a, b = net(x, sample(0)), net(x, sample(1))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert not torch.allclose(a, b)


def test_oneshot_refuses_a_mask_of_another_network():
    with pytest.raises(ValueError, match="kept paths for 3 choices"):
        macro_net().forward_oneshot(images(), [(0,), (0,), (0,)])


# ----------------------------------------------------------------- memory layout
@pytest.mark.parametrize(
    "make,arch", [(macro_net, MacroArch.sample(2, MACRO_LAYERS)), (micro_net, MicroArch.sample(2, BLOCKS))]
)
def test_channels_last_input_gives_the_same_logits(make, arch):
    net = make(ghost_batch_size=2).eval()  # ghost batches are cut along the batch dimension
    x = images(batch=4, size=9)  # odd size: factorized reduces and pools see uneven borders
    kept = kept_paths(net, 0.5, 0)
    plain = net(x, arch)
    plain_oneshot = net.forward_oneshot(x, kept)
    net = net.to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    assert torch.allclose(net(x_cl, arch), plain, atol=1e-5)
    assert torch.allclose(net.forward_oneshot(x_cl, kept), plain_oneshot, atol=1e-5)


def test_supernets_refuse_bad_settings():
    with pytest.raises(EnasError, match="at least 3"):
        macro_net(num_layers=2)
    with pytest.raises(EnasError, match="keep_prob"):
        micro_net(keep_prob=0.0)
    with pytest.raises(EnasError, match="drop_rate"):
        draw_kept_paths(macro_net().oneshot_fan_ins(), -0.1, torch.Generator())
