"""Run configuration: presets equal the reference table, layered resolution, TOML in and out."""

import tomllib

import pytest

from enastool.config import (
    FinalConfig,
    SearchConfig,
    resolve_final_config,
    resolve_search_config,
    toml_value,
)
from enastool.errors import EnasError

AUTHORS_MACRO_12 = "0 3 0 0 1 0 2 0 0 1 2 0 0 0 0 3 1 1 0 1 0"  # the first 6 layers of sec. 3

# Reference sec. 4, column by column.
PAPER_SEARCH = {
    "macro": dict(
        layers=12, channels=36, batch_size=128, epochs=310, l2=2.5e-4, keep_prob=0.9,
        lr_max=0.05, lr_min=5e-4, lr_t0=10, lr_tmul=2, controller_samples=20,
        controller_updates=50, controller_lr=1e-3, tanh_constant=1.5, skip_target=0.4,
        skip_weight=0.8,
    ),
    "micro": dict(
        layers=6, channels=20, num_blocks=5, batch_size=160, epochs=150, l2=1e-4,
        keep_prob=0.9, lr_max=0.05, lr_min=5e-4, lr_t0=10, lr_tmul=2,
        controller_samples=10, controller_updates=30, controller_lr=3.5e-3,
        tanh_constant=1.1, op_tanh_reduce=2.5,
    ),
}
PAPER_FINAL = {
    "macro": dict(
        layers=24, channels=96, batch_size=100, epochs=310, l2=2e-4, keep_prob=0.5,
        lr_max=0.05, lr_min=1e-3, lr_t0=10, lr_tmul=2, aux_weight=0.0, cutout=0,
    ),
    "micro": dict(
        layers=15, channels=36, batch_size=144, epochs=630, l2=2e-4, keep_prob=0.8,
        drop_path_keep=0.6, lr_max=0.05, lr_min=1e-4, lr_t0=10, lr_tmul=2, aux_weight=0.4,
        cutout=16,
    ),
}
# Sec. 4 "Common" row, for both spaces and both kinds.
COMMON = dict(momentum=0.9, nesterov=True, grad_clip=5.0)
CONTROLLER_COMMON = dict(
    lstm_size=64, lstm_layers=1, controller_beta1=0.0, controller_eps=1e-3,
    entropy_weight=1e-4, baseline_decay=0.99,
)


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_paper_search_preset_is_the_reference_table(space):
    config = resolve_search_config("paper", space)
    expected = {**PAPER_SEARCH[space], **COMMON, **CONTROLLER_COMMON, "space": space}
    assert {key: getattr(config, key) for key in expected} == expected


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_paper_final_preset_is_the_reference_table(space):
    config = resolve_final_config("paper", space)
    expected = {**PAPER_FINAL[space], **COMMON, "space": space}
    assert {key: getattr(config, key) for key in expected} == expected
    assert (config.compile, config.dtype, config.channels_last) == ("auto", "auto", "auto")


def test_dataset_is_cifar10_with_a_data_dir_else_digits():
    assert resolve_search_config("paper", "macro").dataset == "digits"
    assert resolve_search_config("paper", "macro", overrides={"data_dir": "d"}).dataset == "cifar10"
    assert resolve_final_config("smoke", "micro", overrides={"data_dir": "d"}).dataset == "cifar10"
    # digits needs no files: a data directory with it is a contradiction, not silently ignored
    with pytest.raises(EnasError, match=r"command line: data_dir = 'd' does not apply to the digits data set"):
        resolve_search_config("paper", "micro", overrides={"data_dir": "d", "dataset": "digits"})


def test_paper_macro_has_no_drop_path_and_micro_no_skip_penalty():
    assert "drop_path_keep" not in SearchConfig.field_names()  # drop path is a final-training setting
    assert resolve_final_config("paper", "macro").drop_path_keep == 1.0
    assert resolve_search_config("paper", "micro").skip_weight == 0.0


@pytest.mark.parametrize("preset,ghost", [("paper", 32), ("smoke", 16)])
@pytest.mark.parametrize("space", ["macro", "micro"])
def test_oneshot_presets_turn_on_ghost_batch_norm_and_the_others_do_not(tmp_path, preset, ghost, space):
    oneshot = resolve_search_config(preset, space, overrides={"strategy": "oneshot"})
    assert oneshot.ghost_batch_size == ghost and oneshot.batch_size % ghost == 0
    for strategy in ("enas", "random"):
        assert resolve_search_config(preset, space, overrides={"strategy": strategy}).ghost_batch_size == 0
    assert resolve_search_config(preset, space).ghost_batch_size == 0  # enas by default
    config_file = tmp_path / "oneshot.toml"
    config_file.write_text('strategy = "oneshot"\n')
    assert resolve_search_config(preset, space, config_file).ghost_batch_size == ghost
    explicit = resolve_search_config(preset, space, overrides={"strategy": "oneshot", "ghost_batch_size": 0})
    assert explicit.ghost_batch_size == 0


# Reference sec. 9 (NAO-WS, the authors' NAO_V1 train_search.py): the micro search network with
# 3 normal cells per stage, its training, the pool and the EPD.
PAPER_NAO_MICRO = dict(
    layers=9, channels=20, num_blocks=5, batch_size=128, epochs=200, momentum=0.9,
    nesterov=False, lr_max=0.025, lr_min=0.001, lr_t0=200, grad_clip=5.0, keep_prob=1.0,
)
PAPER_NAO = dict(
    nao_pool=600, nao_eval_every=50, nao_score_examples=500, nao_epd_epochs=1000, nao_top=100,
    nao_new=300, nao_max_eta=50,
)


def test_paper_nao_preset_is_reference_section_9():
    config = resolve_search_config("paper", "micro", overrides={"strategy": "nao"})
    expected = {**PAPER_NAO_MICRO, **PAPER_NAO, "space": "micro", "strategy": "nao"}
    assert {key: getattr(config, key) for key in expected} == expected
    # The authors give torch's SGD weight_decay=3e-4; enastool's l2 is their loss-term flag
    # (decay 2 x l2), so the same decay is l2 = 1.5e-4.
    assert 2 * config.l2 == pytest.approx(3e-4)
    assert config.lr_t0 == config.epochs  # one cosine cycle over the run, 0.025 to 0.001
    assert config.nao_eval_every * 4 == config.epochs  # 4 evaluation points
    # The EPD's own settings are sec. 9's: they are the defaults of EPDSettings.
    from enastool.search.epd import EPDSettings

    epd = EPDSettings()
    assert (epd.embedding_size, epd.hidden_size, epd.tokens_per_step, epd.batch_size, epd.lr,
            epd.grad_clip, epd.mse_weight, epd.augment_copies, epd.holdout_fraction) == \
        (32, 64, 2, 100, 1e-3, 5.0, 0.8, 10, 0.1)


def test_nao_adds_its_pool_to_every_space_and_the_other_strategies_do_not_change():
    macro = resolve_search_config("paper", "macro", overrides={"strategy": "nao"})
    assert {key: getattr(macro, key) for key in PAPER_NAO} == PAPER_NAO
    assert (macro.layers, macro.channels, macro.epochs) == (12, 36, 310)  # the ENAS macro column
    enas = resolve_search_config("paper", "micro")
    assert (enas.layers, enas.batch_size, enas.lr_max, enas.nesterov) == (6, 160, 0.05, True)
    smoke = resolve_search_config("smoke", "micro", overrides={"strategy": "nao"})
    assert (smoke.dataset, smoke.epochs, smoke.num_blocks, smoke.channels) == ("digits", 10, 2, 8)
    assert smoke.nao_score_examples <= 181 and smoke.nao_new < smoke.nao_pool  # digits hold out 181
    assert smoke.epochs % smoke.nao_eval_every != 0  # evaluation points 3, 6, 9 and the end


def test_nao_settings_that_cannot_work_are_refused_when_the_config_resolves():
    with pytest.raises(EnasError, match=r"command line: strategy = 'nao' cannot encode these architectures: "
                                        r"NAO micro tokens: num_blocks must be 1..5"):
        resolve_search_config("smoke", "micro", overrides={"strategy": "nao", "num_blocks": 6})
    with pytest.raises(EnasError, match=r"nao_new = 300 must be less than nao_pool = 300"):
        resolve_search_config("paper", "micro", overrides={"strategy": "nao", "nao_pool": 300})
    with pytest.raises(EnasError, match=r"command line: nao_top = 700 must not exceed nao_pool = 600"):
        resolve_search_config("paper", "micro", overrides={"strategy": "nao", "nao_top": 700})
    with pytest.raises(EnasError, match=r"nao_pool = 1 must be in \[2, 1,000,000\]"):
        resolve_search_config("smoke", "micro", overrides={"strategy": "nao", "nao_pool": 1})
    # Other strategies ignore the nao settings.
    assert resolve_search_config("smoke", "micro", overrides={"num_blocks": 6}).num_blocks == 6


def test_ghost_batch_size_must_be_off_or_a_divisor_of_at_least_two():
    with pytest.raises(EnasError, match=r"command line: ghost_batch_size = 1 must be 0 \(off\) or in \[2, 65536\]"):
        resolve_search_config("smoke", "macro", overrides={"ghost_batch_size": 1})
    with pytest.raises(EnasError, match=r"ghost_batch_size = 24 must divide batch_size = 64"):
        resolve_search_config("smoke", "macro", overrides={"ghost_batch_size": 24})
    with pytest.raises(EnasError, match=r"preset 'smoke': ghost_batch_size = 16 must divide batch_size = 40"):
        resolve_search_config("smoke", "micro", overrides={"strategy": "oneshot", "batch_size": 40})


def test_l2_help_says_it_is_the_authors_flag():
    for cls in (SearchConfig, FinalConfig):
        assert "2 x l2" in cls.help("l2") and "authors" in cls.help("l2")


def test_smoke_is_tiny_digits_and_keeps_the_space_recipe():
    search = resolve_search_config("smoke", "micro")
    assert (search.dataset, search.epochs) == ("digits", 10)
    assert (search.channels, search.num_blocks) == (8, 2)
    assert (search.controller_samples, search.controller_updates) == (5, 5)
    assert search.batch_size == 64 and search.layers <= 4
    assert search.augment_flip is False  # digits are not mirror-symmetric
    assert (search.tanh_constant, search.op_tanh_reduce) == (1.1, 2.5)  # micro controller
    assert search.lr_max == 0.1  # separate x/y weights: each op trains half as often
    final = resolve_final_config("smoke", "micro")
    assert final.dataset == "digits" and final.aux_weight == 0.0
    assert final.lr_t0 == final.epochs  # one cosine cycle that ends at lr_min


def test_macro_final_layers_come_from_the_architecture():
    config = resolve_final_config("smoke", "macro", arch=AUTHORS_MACRO_12)
    assert config.layers == 6
    assert config.arch == AUTHORS_MACRO_12
    assert resolve_final_config("paper", "macro", arch="macro " + AUTHORS_MACRO_12).layers == 6
    conflict = r"command line: layers = 24 but the macro architecture has 6 layers"
    with pytest.raises(EnasError, match=conflict):
        resolve_final_config("smoke", "macro", overrides={"layers": 24}, arch=AUTHORS_MACRO_12)
    # the same count given explicitly is fine
    same = resolve_final_config("smoke", "macro", overrides={"layers": 6}, arch=AUTHORS_MACRO_12)
    assert same.layers == 6


def test_architecture_must_match_the_space():
    with pytest.raises(EnasError, match=r"arch: token 1"):
        resolve_final_config("paper", "macro", arch="9")
    with pytest.raises(EnasError, match=r"micro architecture but the space is macro"):
        resolve_final_config("paper", "macro", arch="micro " + "0 0 0 0 " * 2)


def test_precedence_default_preset_file_override(tmp_path):
    assert SearchConfig().epochs == 310 and SearchConfig().log_every == 50
    config_file = tmp_path / "run.toml"
    config_file.write_text("epochs = 7\nchannels = 12\nseed = 3\n")
    config = resolve_search_config(
        "smoke", "macro", config_file, overrides={"channels": 16, "seed": None}
    )
    assert config.log_every == 5  # preset beats default
    assert config.epochs == 7  # file beats preset
    assert config.channels == 16  # option beats file
    assert config.seed == 3  # None means "option not given"
    assert config.batch_size == 64  # preset, untouched
    assert config.nesterov is True  # default, untouched


def test_tables_select_the_kind_and_beat_top_level_keys(tmp_path):
    config_file = tmp_path / "both.toml"
    config_file.write_text(
        'seed = 5\nepochs = 9\n[search]\nepochs = 3\ncontroller_lr = 0.01\n'
        '[final]\nepochs = 40\naux_weight = 0.2\n'
    )
    search = resolve_search_config("paper", "micro", config_file)
    final = resolve_final_config("paper", "micro", config_file)
    assert (search.seed, search.epochs, search.controller_lr) == (5, 3, 0.01)
    assert (final.seed, final.epochs, final.aux_weight) == (5, 40, 0.2)


def test_integers_widen_to_floats_and_switch_words_become_booleans(tmp_path):
    config_file = tmp_path / "c.toml"
    config_file.write_text('l2 = 0\n[final]\ncompile = "off"\nchannels_last = true\n')
    final = resolve_final_config("paper", "micro", config_file)
    assert final.l2 == 0.0 and isinstance(final.l2, float)
    assert final.compile is False and final.channels_last is True


def test_unknown_key_names_key_and_file(tmp_path):
    config_file = tmp_path / "typo.toml"
    config_file.write_text("epoch = 3\n")
    with pytest.raises(EnasError) as info:
        resolve_search_config("paper", "macro", config_file)
    message = str(info.value)
    assert message == f"{config_file}: unknown key 'epoch'; did you mean 'epochs'?"
    assert "\n" not in message


def test_unknown_key_in_the_other_kinds_table_is_reported_too(tmp_path):
    config_file = tmp_path / "t.toml"
    config_file.write_text("[final]\naux_wieght = 0.4\n")
    expected = r"unknown key 'aux_wieght' in \[final\]; did you mean 'aux_weight'"
    with pytest.raises(EnasError, match=expected):
        resolve_search_config("paper", "micro", config_file)


def test_search_only_key_is_unknown_to_final(tmp_path):
    config_file = tmp_path / "flat.toml"
    config_file.write_text("controller_lr = 0.01\n")
    with pytest.raises(EnasError, match=r"unknown key 'controller_lr'; it is not a final setting"):
        resolve_final_config("paper", "macro", config_file)


def test_wrong_type_names_key_file_and_expected_type(tmp_path):
    config_file = tmp_path / "types.toml"
    config_file.write_text('epochs = "ten"\n')
    with pytest.raises(EnasError) as info:
        resolve_search_config("paper", "macro", config_file)
    assert str(info.value) == f"{config_file}: epochs = 'ten' has type str, expected an integer"
    config_file.write_text("lr_max = true\n")
    with pytest.raises(EnasError, match=r"lr_max = True has type bool, expected a number"):
        resolve_search_config("paper", "macro", config_file)
    config_file.write_text("[search]\nepochs = 2.5\n")
    expected = r"\[search\]: epochs = 2.5 has type float, expected an integer"
    with pytest.raises(EnasError, match=expected):
        resolve_search_config("paper", "macro", config_file)


def test_missing_and_malformed_files_are_user_errors(tmp_path):
    with pytest.raises(EnasError, match=r"nope.toml: config file not found"):
        resolve_search_config("paper", "macro", tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = \n")
    with pytest.raises(EnasError, match=r"broken.toml: not valid TOML"):
        resolve_search_config("paper", "macro", broken)


def test_invalid_values_name_their_origin(tmp_path):
    config_file = tmp_path / "v.toml"
    config_file.write_text("keep_prob = 1.5\n")
    with pytest.raises(EnasError, match=r"v.toml: keep_prob = 1.5 must be in \(0, 1\]"):
        resolve_search_config("paper", "macro", config_file)
    expected = r"command line: strategy = 'darts' is not one of enas, random, oneshot"
    with pytest.raises(EnasError, match=expected):
        resolve_search_config("paper", "macro", overrides={"strategy": "darts"})
    with pytest.raises(EnasError, match=r"lr_min = 0.5 must not exceed lr_max"):
        resolve_search_config("paper", "macro", overrides={"lr_min": 0.5})
    with pytest.raises(EnasError, match=r"unknown preset 'huge'"):
        resolve_search_config("huge", "macro")
    with pytest.raises(EnasError, match=r"unknown space 'nano'"):
        resolve_search_config("paper", "nano")


def test_space_comes_from_the_file_when_not_given(tmp_path):
    config_file = tmp_path / "s.toml"
    config_file.write_text('space = "micro"\n')
    config = resolve_search_config("paper", None, config_file)
    assert (config.space, config.layers, config.channels) == ("micro", 6, 20)


@pytest.mark.parametrize("kind", ["search", "final"])
def test_written_toml_reads_back_to_the_same_config(tmp_path, kind):
    resolve = resolve_search_config if kind == "search" else resolve_final_config
    config = resolve("smoke", "micro", overrides={"data_dir": 'C:\\data "x"\tü', "seed": 11})
    path = tmp_path / "config.toml"
    config.write_toml(path)
    text = path.read_text()
    assert f"[{kind}]" in text and "# seed of every random number generator" in text
    assert type(config).read_toml(path) == config
    # and the same file works as --config for a new run of that kind
    assert resolve("paper", "micro", path) == config


def test_none_values_are_left_out_of_the_toml(tmp_path):
    config = resolve_search_config("paper", "macro")
    assert config.data_dir is None
    data = tomllib.loads(config.to_toml())["search"]
    assert "data_dir" not in data and "val_size" not in data
    assert data["l2"] == 2.5e-4 and data["nesterov"] is True


def test_json_round_trip_and_partial_dicts():
    config = resolve_final_config("paper", "micro")
    assert FinalConfig.from_dict(config.to_dict()) == config
    partial = FinalConfig.from_dict({"epochs": 3}, source="x.json")
    assert partial.epochs == 3 and partial.batch_size == FinalConfig().batch_size
    with pytest.raises(EnasError, match=r"x.json: unknown key 'epochz'"):
        FinalConfig.from_dict({"epochz": 3}, source="x.json")


def test_toml_scalar_writer():
    assert [toml_value(v) for v in (True, 3, 2.5e-4, 1e22, float("inf"))] == [
        "true", "3", "0.00025", "1e+22", "inf",
    ]
    assert toml_value('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u0001"'
    for value in (0.1, 1e-05, 3.0, 'q"\\\x7f'):
        assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_every_field_has_a_description():
    for cls in (SearchConfig, FinalConfig):
        assert all(cls.help(name) for name in cls.field_names())


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, enastool.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------------ ranges
def numeric_fields(cls) -> list[tuple[str, tuple[type, ...]]]:
    """(name, number types) of every int or float setting of ``cls`` (bools are switches)."""
    from dataclasses import fields

    from enastool.config import _allowed_types

    found = []
    for f in fields(cls):
        kinds = tuple(t for t in _allowed_types(cls, f.name) if t in (int, float))
        if kinds and bool not in _allowed_types(cls, f.name):
            found.append((f.name, kinds))
    return found


@pytest.mark.parametrize("cls", [SearchConfig, FinalConfig])
def test_every_numeric_setting_has_a_rule_with_an_upper_bound(cls):
    # A setting added later without a rule fails here, so none can skip the range check.
    from enastool.config import RULES

    names = [name for name, _ in numeric_fields(cls)]
    assert "epochs" in names and "seed" in names and "lr_max" in names
    for name, kinds in numeric_fields(cls):
        assert name in RULES, f"{cls.kind} setting {name!r} has no rule in RULES"
        rule = RULES[name]
        default = getattr(cls(), name)
        assert rule(default if default is not None else 1) is None, name
        for absurd in (10**30, 2**63 - 1, -1, -(10**30)):  # no setting here may be negative
            assert rule(absurd) is not None, (name, absurd)
        if float in kinds:
            for absurd in (float("nan"), float("inf"), float("-inf"), 1e300):
                assert rule(absurd) is not None, (name, absurd)


def test_absurd_values_from_toml_and_options_are_one_line_naming_the_setting(tmp_path):
    config_file = tmp_path / "big.toml"
    config_file.write_text("epochs = 9223372036854775807\n")
    with pytest.raises(EnasError, match=r"big.toml: epochs = 9223372036854775807 must be in \[1, 100,000\]"):
        resolve_search_config("paper", "macro", config_file)
    config_file.write_text("[final]\nbatch_size = 1000000000\n")
    with pytest.raises(EnasError, match=r"big.toml: batch_size = 1000000000 must be in \[1, 65,536\]"):
        resolve_final_config("paper", "micro", config_file)
    with pytest.raises(EnasError, match=r"command line: seed = 99999999999999999999999 must be in \[0, 4,294,967,295\]"):
        resolve_search_config("paper", "macro", overrides={"seed": 99999999999999999999999})
    with pytest.raises(EnasError, match=r"command line: lr_max = nan must be in \(0, 100.0\]"):
        resolve_final_config("paper", "macro", overrides={"lr_max": float("nan")})
    with pytest.raises(EnasError, match=r"command line: layers = 65 must be in \[1, 64\]"):
        resolve_search_config("paper", "macro", overrides={"layers": 65})


def test_a_run_config_json_must_be_complete(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    assert SearchConfig.read_json(path) == SearchConfig()  # a partial file fills in defaults
    with pytest.raises(EnasError, match=r"config.json: missing space, strategy, dataset, data_dir and \d+ more; "
                                        r"a run's config.json holds every search setting"):
        SearchConfig.read_json(path, complete=True)


def test_the_config_knows_which_data_sets_read_files():
    from enastool.config import DATASET_READS_FILES, DATASETS
    from enastool.data.corpora import DEFAULT_TEXT_DATASET, TEXT_DATASET_WITH_DIR
    from enastool.data.datasets import DATASETS as SOURCES

    assert set(DATASET_READS_FILES) == set(DATASETS) == set(SOURCES) | {DEFAULT_TEXT_DATASET, TEXT_DATASET_WITH_DIR}
    assert all(DATASET_READS_FILES[name] == SOURCES[name].needs_files for name in SOURCES)
    assert (DATASET_READS_FILES[DEFAULT_TEXT_DATASET], DATASET_READS_FILES[TEXT_DATASET_WITH_DIR]) == (False, True)


def test_the_config_knows_the_side_of_every_image_data_set():
    from enastool.config import IMAGE_SIDES
    from enastool.data import cifar10, digits

    assert IMAGE_SIDES == {"digits": digits.SIZE, "cifar10": cifar10.SIZE}


def test_set_assignments_are_typed_by_their_field():
    from enastool.config import parse_assignment

    assert parse_assignment(SearchConfig, "controller_lr=1e-3") == ("controller_lr", 1e-3)
    assert parse_assignment(SearchConfig, "epochs = 3") == ("epochs", 3)
    assert parse_assignment(SearchConfig, "lr_max=1") == ("lr_max", 1.0)  # an int widens
    assert parse_assignment(SearchConfig, "nesterov=false") == ("nesterov", False)
    assert parse_assignment(FinalConfig, "compile=off") == ("compile", False)  # a switch word
    assert parse_assignment(FinalConfig, "channels_last=auto") == ("channels_last", "auto")
    assert parse_assignment(SearchConfig, "device=cuda:1") == ("device", "cuda:1")  # a bare word
    assert parse_assignment(SearchConfig, 'device="cpu"') == ("device", "cpu")
    assert parse_assignment(SearchConfig, "data_dir=2024") == ("data_dir", "2024")  # a name, not a number
    assert parse_assignment(SearchConfig, "val_size=none") == ("val_size", None)
    with pytest.raises(EnasError, match=r"^--set seed=none: seed = 'none' has type str, expected an integer$"):
        parse_assignment(SearchConfig, "seed=none")  # seed cannot be unset


def test_the_default_preset_follows_the_data_set(tmp_path):
    from enastool.config import default_preset

    assert default_preset(SearchConfig, None, {}) == "smoke"  # digits
    assert default_preset(SearchConfig, None, {"data_dir": "data"}) == "paper"  # cifar10
    assert default_preset(FinalConfig, None, {"dataset": "cifar10", "data_dir": None}) == "paper"
    config_file = tmp_path / "c.toml"
    config_file.write_text('[search]\ndata_dir = "data"\n')
    assert default_preset(SearchConfig, config_file, {}) == "paper"
    assert default_preset(SearchConfig, config_file, {"dataset": "digits"}) == "smoke"
    # rnn: the embedded pydoc corpus, or PTB in a data directory
    assert default_preset(SearchConfig, None, {"space": "rnn"}) == "smoke"
    assert default_preset(FinalConfig, None, {"space": "rnn", "data_dir": "ptb"}) == "paper"
    assert default_preset(SearchConfig, None, {"dataset": "ptb"}) == "paper"
    assert default_preset(SearchConfig, None, {"dataset": "pydoc"}) == "smoke"


def test_check_data_refuses_augmentation_larger_than_the_images_and_names_its_origin():
    with pytest.raises(EnasError, match=r"^preset 'paper': augment_pad = 4 shifts the 8x8 images of digits"):
        resolve_search_config("paper", "micro", check_data=True)
    with pytest.raises(EnasError, match=r"^--set cutout=8: cutout = 8 covers the whole 8x8 image of digits"):
        resolve_final_config("smoke", "macro", overrides={"cutout": 8}, arch="macro 0",
                             origins={"cutout": "--set cutout=8"}, check_data=True)
    # the paper settings fit CIFAR-10, and without check_data a configuration is only checked
    # against its rules (benchmarks build paper networks without data)
    assert resolve_search_config("paper", "micro", overrides={"data_dir": "d"}, check_data=True).augment_pad == 4
    assert resolve_search_config("paper", "micro").dataset == "digits"


# ------------------------------------------------------------------------ rnn (reference sec. 8)
PAPER_RNN_SEARCH = dict(
    num_nodes=8, hidden_size=200, batch_size=128, bptt=35, epochs=600, lr_max=20.0, lr_min=20.0,
    momentum=0.0, grad_clip=0.1, l2=8e-7, init_range=0.04, drop_words=0.10, drop_embedding=0.20,
    drop_inputs=0.75, drop_hidden=0.25, drop_output=0.75, drop_weights=0.0, alpha=0.0, beta=1.0,
    lstm_size=64, lstm_layers=1, temperature=5.0, tanh_constant=2.25, distance_prior=6.0,
    controller_lr=5e-5, controller_samples=10, controller_updates=25, baseline_decay=0.999,
    entropy_weight=1e-5, controller_beta1=0.9, controller_eps=1e-8,
)
PAPER_RNN_FINAL = dict(
    hidden_size=800, batch_size=64, bptt=35, epochs=3000, lr_max=20.0, lr_min=20.0, momentum=0.0,
    grad_clip=0.25, l2=8e-7, init_range=0.05, drop_words=0.125, drop_embedding=0.175,
    drop_inputs=0.725, drop_hidden=0.225, drop_output=0.75, drop_weights=0.0, alpha=0.7, beta=0.0,
    nonmono=10, test_batch_size=1,
)


def test_paper_rnn_presets_are_reference_section_8():
    search = resolve_search_config("paper", "rnn")
    assert {key: getattr(search, key) for key in PAPER_RNN_SEARCH} == PAPER_RNN_SEARCH
    final = resolve_final_config("paper", "rnn", arch="0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2")
    assert {key: getattr(final, key) for key in PAPER_RNN_FINAL} == PAPER_RNN_FINAL


def test_rnn_settings_drive_the_networks_of_the_nn_module():
    from enastool.nn import recurrent
    from enastool.train.lm import drop_rates

    search = resolve_search_config("paper", "rnn")
    final = resolve_final_config("paper", "rnn", arch="0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2")
    assert drop_rates(search) == recurrent.SEARCH_DROP_RATES and drop_rates(final) == recurrent.FINAL_DROP_RATES
    assert (search.hidden_size, search.init_range, search.alpha, search.beta) == (
        recurrent.SEARCH_HIDDEN, recurrent.SEARCH_INIT_RANGE, recurrent.SEARCH_ALPHA, recurrent.SEARCH_BETA)
    assert (final.hidden_size, final.init_range, final.alpha, final.beta) == (
        recurrent.FINAL_HIDDEN, recurrent.FINAL_INIT_RANGE, recurrent.FINAL_ALPHA, recurrent.FINAL_BETA)


@pytest.mark.parametrize("cls", [SearchConfig, FinalConfig])
def test_every_rnn_setting_has_a_rule_with_an_upper_bound(cls):
    from enastool.config import KIND_FIELDS, RULES

    names = [name for name in KIND_FIELDS["text"] if name in cls.field_names()]
    assert len(names) >= 13
    for name in names:
        rule = RULES[name]
        assert rule(getattr(cls(), name)) is None, name  # the default is valid
        assert rule(10**9) is not None and rule(-1) is not None, name


def test_data_sets_by_kind_match_the_data_registries_and_defaults_follow_the_space():
    from enastool.config import DATASETS_OF_KIND
    from enastool.data import DEFAULT_TEXT_DATASET, TEXT_DATASET_WITH_DIR, dataset_names, text_dataset_names

    assert set(DATASETS_OF_KIND["text"]) == set(text_dataset_names())
    assert DATASETS_OF_KIND["text"] == (DEFAULT_TEXT_DATASET, TEXT_DATASET_WITH_DIR)
    assert set(DATASETS_OF_KIND["images"]) == set(dataset_names())
    assert resolve_search_config("smoke", "rnn").dataset == "pydoc"
    assert resolve_search_config("smoke", "rnn", overrides={"data_dir": "d"}).dataset == "ptb"
    assert resolve_search_config("smoke", "micro", overrides={"data_dir": "d"}).dataset == "cifar10"
    with pytest.raises(EnasError, match="dataset = 'cifar10' is not a data set of the rnn space"):
        resolve_final_config("smoke", "rnn", overrides={"dataset": "cifar10"}, arch="0 0")


def test_settings_of_the_other_data_kind_are_refused_on_the_command_line_but_not_in_files(tmp_path):
    with pytest.raises(EnasError, match="command line: cutout is a setting of macro and micro runs"):
        resolve_final_config("smoke", "rnn", overrides={"cutout": 8}, arch="0 0")
    with pytest.raises(EnasError, match="command line: bptt is a setting of rnn runs, which macro runs"):
        resolve_search_config("smoke", "macro", overrides={"bptt": 20})
    shared = tmp_path / "both.toml"
    shared.write_text("channels = 8\nhidden_size = 32\n")  # one file for runs of either kind
    assert resolve_search_config("smoke", "rnn", config_file=shared).hidden_size == 32
    assert resolve_search_config("smoke", "micro", config_file=shared).channels == 8


def test_oneshot_is_a_strategy_of_the_image_spaces_only():
    with pytest.raises(EnasError, match="'oneshot' is not available for the rnn space: choose enas or random"):
        resolve_search_config("smoke", "rnn", overrides={"strategy": "oneshot"})
    assert resolve_search_config("smoke", "micro", overrides={"strategy": "oneshot"}).strategy == "oneshot"
