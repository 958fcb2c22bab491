"""The single-finger 1:1 evaluation tool: a profile's capture settings are
the ones measured, and a bad profile is one line."""

import pytest

from fpscale.bench.profile import read_profile
from fpscale.bench.tools.matcher_eval import Sample, accuracy, main
from fpscale.synth.population import spec_from_dict


def test_accuracy_measures_with_the_profiles_capture_settings():
    pop = spec_from_dict(read_profile("best-2012")["population"])
    small = dict(sample=Sample(genuine=300, impostor=3000, held_out=1000), fmr=1e-2, rounds=20)
    mine = accuracy(pop=pop, **small)
    plain = accuracy(**small)
    assert (mine["extraction_noise"], mine["capture_noise"], mine["quality_correlation"]) == (0.5355, 0.2329, 0.5)
    assert (plain["extraction_noise"], plain["capture_noise"], plain["quality_correlation"]) == (1.0, 1.0, 0.0)
    # less extraction noise: fewer missed minutiae on the same fingers, and
    # MCC misses fewer mates at the same FMR
    assert mine["minutiae_gallery_mean"] > plain["minutiae_gallery_mean"]
    assert mine["mcc"]["fnmr"] < plain["mcc"]["fnmr"]
    assert accuracy(pop=pop, **small)["mcc"]["fnmr"] == mine["mcc"]["fnmr"]  # deterministic


def test_an_unknown_profile_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["accuracy", "--profile", "no-such-profile"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "no-such-profile" in err
