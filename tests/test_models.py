"""Generators and critics: the original's sizes, shapes, ranges, and batch-statistics conditional BN."""
import pytest
import torch

from mergan.models import (ConditionalBatchNorm2d, build_critic, build_generator, count_parameters,
                           model_config)


@pytest.mark.parametrize("channels, g_params, d_params", [(1, 525_569, 279_563), (3, 527_171, 281_163)])
def test_dcgan32_matches_original_parameter_counts(channels, g_params, d_params):
    cfg = model_config("dcgan32", channels=channels)
    assert count_parameters(build_generator(cfg)) == g_params
    assert count_parameters(build_critic(cfg)) == d_params


def test_resnet64_parameter_counts_are_the_originals_layer_by_layer():
    """``gan64_model.py``'s layers counted by hand: 8,622,403 and 7,573,771 (the original's 8.62M and 7.57M)."""
    z, n, dim, rgb = 128, 10, 64, 3

    def conv(cin, cout, k, bias=True):
        return k * k * cin * cout + (cout if bias else 0)

    def up(a, b):      # shortcut 1x1, batch norm, 3x3 without bias, batch norm, 3x3
        return conv(a, b, 1) + 2 * a + conv(a, b, 3, bias=False) + 2 * b + conv(b, b, 3)

    def down(a, b):    # shortcut 1x1, layer norm, 3x3 without bias, layer norm, 3x3
        return conv(a, b, 1) + 2 * a + conv(a, a, 3, bias=False) + 2 * a + conv(a, b, 3)

    flat = 4 * 4 * 8 * dim
    widths = [8 * dim, 8 * dim, 4 * dim, 2 * dim, dim]
    g = (z + n) * flat + flat + sum(up(a, b) for a, b in zip(widths, widths[1:])) + 2 * dim + conv(dim, rgb, 3)
    widths = widths[::-1]
    d = conv(rgb, dim, 3) + sum(down(a, b) for a, b in zip(widths, widths[1:])) + (flat + 1) + (flat * n + n)
    assert (g, d) == (8_622_403, 7_573_771)
    cfg = model_config("resnet64", channels=3)
    assert count_parameters(build_generator(cfg)) == g
    assert count_parameters(build_critic(cfg)) == d


@pytest.mark.parametrize("arch, channels, size, dim", [("dcgan32", 1, 32, 8), ("dcgan32", 3, 32, 8),
                                                       ("resnet64", 3, 64, 4)])
def test_shapes_and_ranges(arch, channels, size, dim):
    cfg = model_config(arch, channels=channels, dim=dim)
    G, D = build_generator(cfg), build_critic(cfg)
    z, y = torch.randn(6, 128), torch.tensor([0, 1, 2, 3, 9, 9])
    x = G(z, y)
    assert x.shape == (6, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    out, logits = D(x)
    assert out.shape == (6,) and logits.shape == (6, 10)


def test_ac_head_has_at_least_ten_classes():
    assert model_config("resnet64", channels=3, n_classes=4)["n_classes"] == 10
    assert model_config("dcgan32", channels=3, n_classes=12)["n_classes"] == 12


def test_conditional_bn_uses_batch_statistics_in_eval_mode_too():
    torch.manual_seed(0)
    bn = ConditionalBatchNorm2d(3, 10)
    x = torch.randn(8, 3, 4, 4) * 5 + 2
    y = torch.zeros(8, dtype=torch.long)
    bn.eval()
    out = bn(x, y)
    # normalised with this batch's mean and biased variance, whatever the mode
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    # one sample's output depends on the rest of its batch (no running averages)
    assert not torch.allclose(bn(x[:4], y[:4])[0], out[0])


def test_conditional_bn_per_class_scale_and_offset():
    bn = ConditionalBatchNorm2d(2, 10)
    with torch.no_grad():
        bn.scale[3] = torch.tensor([2.0, 3.0])
        bn.offset[3] = torch.tensor([1.0, -1.0])
    x = torch.randn(16, 2, 3, 3)
    base = bn(x, torch.zeros(16, dtype=torch.long))
    out = bn(x, torch.full((16,), 3))
    assert torch.allclose(out, base * torch.tensor([2.0, 3.0])[None, :, None, None]
                          + torch.tensor([1.0, -1.0])[None, :, None, None], atol=1e-6)


def test_generator_output_depends_on_label_and_is_batch_dependent():
    torch.manual_seed(0)
    G = build_generator(model_config("dcgan32", channels=1, dim=8))
    with torch.no_grad():  # give the class tables distinct values, as training would
        for norm in G.norms:
            norm.scale.normal_(1, 0.5)
            norm.offset.normal_(0, 0.5)
    z = torch.randn(8, 128)
    a = G(z, torch.zeros(8, dtype=torch.long))
    b = G(z, torch.ones(8, dtype=torch.long))
    assert (a - b).abs().max() > 1e-3
    G.eval()
    assert torch.allclose(G(z, torch.zeros(8, dtype=torch.long)), a)


@pytest.mark.parametrize("arch, channels", [("dcgan32", 1), ("resnet64", 3)])
def test_grouped_call_equals_one_call_per_class(arch, channels):
    """groups=k normalises each chunk of the batch with its own statistics: k calls in one."""
    torch.manual_seed(0)
    G = build_generator(model_config(arch, channels=channels, dim=8))
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z, y = torch.randn(12, 128), torch.arange(3).repeat_interleave(4)
    grouped = G(z, y, groups=3)
    separate = torch.cat([G(z[i * 4:(i + 1) * 4], y[i * 4:(i + 1) * 4]) for i in range(3)])
    assert torch.allclose(grouped, separate, atol=1e-5)
    assert (G(z, y) - separate).abs().max() > 1e-3  # one group is not the same thing
    with pytest.raises(ValueError, match="equal groups"):
        G(z[:10], y[:10], groups=3)


def test_the_same_generator_saves_to_the_same_bytes(tmp_path):
    """The safetensors header is written with sorted keys, so a file's bytes depend only on its content."""
    from mergan.checkpoints import load_generator, save_generator

    cfg = model_config("dcgan32", channels=1, dim=4)
    torch.manual_seed(0)
    G = build_generator(cfg)
    from helpers import task_meta

    meta = task_meta(cfg, strategy="ra", ra_lambda=1e-3)
    files = [tmp_path / f"g{i}.safetensors" for i in range(4)]
    for f in files:
        save_generator(f, G, meta)
    assert len({f.read_bytes() for f in files}) == 1
    G2, meta2 = load_generator(files[0])
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    assert meta2.classes == ["0"] and meta2.model == cfg and meta2.config.ra_lambda == 1e-3
