#!/usr/bin/env python3
"""Golden-data generator for warmstart: runs TensorFlow's own warm start and records the result.

How to run (from anywhere; needs tensorflow-cpu==2.21.0, numpy and safetensors 0.8):

    /path/to/python tests/golden/generate.py            # regenerate every case
    /path/to/python tests/golden/generate.py NAME ...   # only the cases whose name contains NAME

What it writes: tests/golden/cases/<case>/ for every case defined in `cases()` below (the whole
cases/ tree is deleted and rewritten when no NAME is given). Each case directory holds, in the
warmstart CLI's own input format:

  plan.toml              the plan (paths relative to the case directory, output = "out.safetensors")
  old.safetensors        the old checkpoint, or old/ with shards (+ model.safetensors.index.json);
                         a partitioned old variable is stored as <name>/part_<k>
  model.safetensors      the new model: every variable of the new graph with its initial value;
                         partitioned variables as <name>/part_<k> exactly as TF names the partitions
  *.txt                  the vocabulary files named by the plan, byte for byte
  expected.safetensors   (TF accepted) every tensor of model.safetensors after TF's
                         tf.compat.v1.train.warm_start + global_variables_initializer
  expected_error.json    (refused) {"tf_error": exception class or null, "tf_message": str(e)
                         (first 500 chars, temp paths replaced) or null, "match": substring or list
                         of alternatives (lowercase) the tool's stderr must contain}
  case.json              {"description", "covers", "differs_from_tf"}

Where the tool deliberately differs from TF and accepts (documented in the README), the case
holds expected.safetensors made by TF from an equivalent configuration (case field tf_variant:
e.g. a 1-D bias run as [n, 1], a float64 table run in float32 with exactly representable values)
mapped back to the case's names, shapes and dtypes; case.json says why.

How the expected values are made: per case a fresh tf.Graph holds the OLD variables (partitioned
with fixed_size_partitioner where the case says so); they are saved with tf.compat.v1.train.Saver
into a temporary directory (TF reads that checkpoint; the tool reads the safetensors copy). A
second fresh graph holds the NEW variables, created with get_variable and an initializer that
returns the case's numpy initial value (sliced by partition_info.var_offset for partitions);
their values after a plain global_variables_initializer() are model.safetensors. Then
warm_start(...) is called with the plan's settings and global_variables_initializer() is run in
a new session; the values read back are expected.safetensors. An exception from warm_start or
from the initializer run makes the case an expected_error.json case. Every case declares what it
expects (ok / TF error / tool-only refusal), and the generator stops if TF disagrees; several
cases also check TF's numbers against the ones in TF's own unit tests.

Deterministic: fixed values (no random numbers), sorted JSON keys, fixed shard assignment;
running it twice gives byte-identical files.
"""

import json
import os
import re
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

tf.compat.v1.disable_eager_execution()
tf.get_logger().setLevel("ERROR")

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_DIR = os.path.join(HERE, "cases")

F32 = np.float32


# --------------------------------------------------------------------------------------------
# Case description helpers
# --------------------------------------------------------------------------------------------


class Var:
    """A variable of the old checkpoint or the new model."""

    def __init__(self, name, value, parts=None, trainable=True):
        self.name = name
        self.value = np.ascontiguousarray(value)
        self.parts = parts  # None: not partitioned; k: fixed_size_partitioner(k) on axis 0
        self.trainable = trainable


class Init:
    """A backup initializer: its plan spelling and the TF initializer that matches it."""

    def __init__(self, plan, make_tf):
        self.plan = plan  # list of (key, value) for the inline table
        self.make_tf = make_tf


def zeros():
    return Init([("type", "zeros")], lambda: tf.compat.v1.zeros_initializer())


def ones():
    return Init([("type", "ones")], lambda: tf.compat.v1.ones_initializer())


def constant(c):
    # constant_initializer cannot take TF's dynamic shapes; random_uniform(c, c) is exactly c.
    return Init([("type", "constant"), ("value", float(c))],
                lambda: tf.compat.v1.random_uniform_initializer(c, c))


def uniform_cc(c, seed):
    return Init([("type", "random_uniform"), ("minval", float(c)), ("maxval", float(c)),
                 ("seed", int(seed))],
                lambda: tf.compat.v1.random_uniform_initializer(c, c, seed=seed))


class Vocab:
    """A var_name_to_vocab_info entry."""

    def __init__(self, new_vocab, new_vocab_size, num_oov_buckets, old_vocab, old_vocab_size=None,
                 axis=None, backup=None):
        self.new_vocab = new_vocab
        self.new_vocab_size = new_vocab_size
        self.num_oov_buckets = num_oov_buckets
        self.old_vocab = old_vocab
        self.old_vocab_size = old_vocab_size  # None: not written in the plan (-1)
        self.axis = axis  # None: not written in the plan (0)
        self.backup = backup  # None: not written in the plan (TF None -> zeros)


OMIT = object()  # vars_to_warm_start not written in the plan (default ".*")


class Case:
    def __init__(self, name, description, covers, old, new, *, files=None,
                 vars_to_warm_start=OMIT, non_trainable=None, prev=None, vocab=None,
                 layout="file", shards=None, expect="ok", match=None, differs_from_tf=None,
                 check=None, also_none=False, plan_checkpoint=None, tf_variant=None,
                 to_tool=None):
        self.name = name
        self.description = description
        self.covers = covers
        self.old = old
        self.new = new
        self.files = files or {}  # relative path -> bytes
        self.vars_to_warm_start = vars_to_warm_start
        self.non_trainable = non_trainable
        self.prev = prev or {}
        self.vocab = vocab or {}
        # "file": old.safetensors; "index_dir"/"index_json": old/ with shards and an index
        # (plan names the directory / the index file); "noindex_dir": old/ with shards only.
        self.layout = layout
        self.shards = shards  # shard file name -> list of old tensor names (safetensors names)
        # "ok": TF accepts and so must the tool; "tf_error": TF raises; "tool_refuses": TF
        # accepts but the tool deliberately refuses (expected_error.json with tf_error null);
        # "differs": the tool deliberately accepts or selects differently (see tf_variant).
        self.expect = expect
        self.match = match
        self.differs_from_tf = differs_from_tf
        self.check = check or {}  # full var name -> expected full value (checked against TF)
        self.also_none = also_none  # also run TF with vars_to_warm_start=None, must agree
        self.plan_checkpoint = plan_checkpoint
        # expect == "differs": the tool deliberately differs from TF (a difference the README
        # documents). TF runs `tf_variant` (a Case expressing in TF terms what the tool does),
        # and `to_tool` maps each of TF's tensor dicts (old, initial, result) back to this
        # case's names, shapes and dtypes.
        self.tf_variant = tf_variant
        self.to_tool = to_tool


def vocab_bytes(tokens, sep="\n", trailing=False):
    s = sep.join(tokens) + (sep if trailing else "")
    return s.encode("utf-8")


def pattern(shape, scale=1.0, base=0.0, dtype=F32):
    """Distinct, exactly representable values."""
    n = int(np.prod(shape)) if shape else 1
    return (np.arange(n, dtype=np.float64) * scale + base).reshape(shape).astype(dtype)


def full(shape, v, dtype=F32):
    return np.full(shape, v, dtype=dtype)


# TF's warm_starting_util_test data.
FRUIT_OLD = ["apple", "banana", "guava", "orange"]
FRUIT_NEW = ["orange", "guava", "banana", "apple", "raspberry"]
FRUIT_WEIGHTS = np.array([[.5], [1.], [1.5], [2.]], F32)
COL_CKPT = np.array([[.5, .3], [1., .8], [1.5, 1.2], [2., 2.3]], F32)


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------


def cases():
    out = []
    add = out.append

    # ---------------------------------------------------------------- plain copies / selection
    add(Case(
        "plain_copy_default_selection",
        "Default vars_to_warm_start (.*, TRAINABLE only): trainable f32 matrix, bias, scalar and "
        "f64 variables are copied; non-trainable int64 global_step and bn/moving_mean keep their "
        "initial values; an old-only tensor is ignored.",
        ["plain_copy", "default_selection", "non_trainable", "int64", "float64", "scalar",
         "extra_old_tensor"],
        old=[Var("dense/kernel", pattern([3, 4], .25, 1.)),
             Var("dense/bias", pattern([4], .5, -1.)),
             Var("scale", np.array(2.5, F32)),
             Var("emb64", pattern([3, 2], .125, 3., np.float64)),
             Var("global_step", np.array(1234, np.int64)),
             Var("bn/moving_mean", pattern([4], 1., 10.)),
             Var("old_only/extra", pattern([2], 1., 100.))],
        new=[Var("global_step", np.array(0, np.int64), trainable=False),
             Var("dense/kernel", full([3, 4], -1.)),
             Var("dense/bias", full([4], -2.)),
             Var("scale", np.array(-3., F32)),
             Var("emb64", full([3, 2], -4., np.float64)),
             Var("bn/moving_mean", full([4], 1.), trainable=False)],
        non_trainable=["global_step", "bn/moving_.*"],
        check={"dense/kernel": pattern([3, 4], .25, 1.), "global_step": np.array(0, np.int64),
               "bn/moving_mean": full([4], 1.)}))

    add(Case(
        "plain_copy_partitions_differ",
        "Explicit \".*\": partitioned new variables from unpartitioned, differently partitioned "
        "and partitioned old tensors (TF testWarmStartVar*Partitioned), and a 1-part partitioned "
        "variable.",
        ["plain_copy", "new_partitioned", "old_partitioned", "repartition", "single_partition"],
        old=[Var("part/w", pattern([5, 3], 1., 1.)),
             Var("part/u", pattern([7, 2], .5, 20.), parts=2),
             Var("part/s", pattern([4, 2], .25, -5.), parts=3),
             Var("one/x", pattern([3, 2], 2., 0.))],
        new=[Var("part/w", full([5, 3], -1.), parts=2),
             Var("part/u", full([7, 2], -1.), parts=3),
             Var("part/s", full([4, 2], -1.)),
             Var("one/x", full([3, 2], -1.), parts=1)],
        vars_to_warm_start=".*",
        check={"part/w": pattern([5, 3], 1., 1.), "part/u": pattern([7, 2], .5, 20.),
               "part/s": pattern([4, 2], .25, -5.)}))

    momentum_old = [Var("v1", full([10, 1], 1.)), Var("v1/Momentum", full([10, 1], 1.)),
                    Var("v2", full([10, 1], 1.)), Var("v2/Momentum", full([10, 1], 1.)),
                    Var("global_step", np.array(77, np.int64))]

    def momentum_new(momentum_trainable):
        return [Var("v1", full([10, 1], 0.)),
                Var("v1/Momentum", full([10, 1], 0.), trainable=momentum_trainable),
                Var("v2", full([10, 1], 0.)),
                Var("v2/Momentum", full([10, 1], 0.), trainable=momentum_trainable),
                Var("global_step", np.array(0, np.int64), trainable=False)]

    add(Case(
        "select_list_of_regexes",
        "TF testWarmStart_ListOfRegexes: vars_to_warm_start = [\"v1\", \"v2[^/]\"] selects over "
        "GLOBAL variables (non-trainable Momentum slots included); re.match is prefix-anchored, "
        "so \"v1\" also selects v1/Momentum, and \"v2[^/]\" matches \"v2:0\" but not v2/Momentum.",
        ["list_selection", "global_variables", "prefix_match", "graph_name_with_colon0"],
        old=momentum_old, new=momentum_new(False),
        vars_to_warm_start=["v1", "v2[^/]"], non_trainable=[".*/Momentum", "global_step"],
        check={"v1": full([10, 1], 1.), "v1/Momentum": full([10, 1], 1.),
               "v2": full([10, 1], 1.), "v2/Momentum": full([10, 1], 0.)}))

    add(Case(
        "select_list_overlapping_regexes_partitioned",
        "vars_to_warm_start = [\"w\", \"w/part\", \"emb\", \".*emb.*\"]: the partitions of w "
        "and of the vocab variable emb are each collected twice; TF only rejects duplicates of "
        "non-partitioned variables, so this works (the duplicate restores are identical).",
        ["list_selection", "overlapping_regexes", "new_partitioned", "vocab_rows"],
        old=[Var("w", pattern([4, 1], 1., 1.)), Var("emb", FRUIT_WEIGHTS),
             Var("v", full([2], 1.))],
        new=[Var("w", full([4, 1], -1.), parts=2), Var("emb", full([6, 1], -1.), parts=2),
             Var("v", full([2], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt")},
        vars_to_warm_start=["w", "w/part", "emb", ".*emb.*"],
        check={"w": pattern([4, 1], 1., 1.), "v": full([2], -1.),
               "emb": np.array([[2], [1.5], [1], [.5], [0], [0]], F32)}))

    add(Case(
        "select_list_partition_twice_plain",
        "vars_to_warm_start = [\"w/part_1\", \".*part_1\"]: the second of 2 partitions of a "
        "plain variable is matched by both patterns. TF holds it twice, so it is not a lone "
        "partition: it is restored as a slice of the checkpoint tensor (rows 3..5), not compared "
        "with the whole tensor as error_select_single_partition_plain is.",
        ["list_selection", "overlapping_regexes", "partition_name", "partial_partition",
         "new_partitioned"],
        old=[Var("w", pattern([6, 2], 1., 1.))],
        new=[Var("w", full([6, 2], -1.), parts=2)],
        vars_to_warm_start=["w/part_1", ".*part_1"],
        check={"w": np.concatenate([full([3, 2], -1.), pattern([6, 2], 1., 1.)[3:]])}))

    add(Case(
        "error_list_partition_twice_plain_shape",
        "As select_list_partition_twice_plain, with a checkpoint tensor of the partition's "
        "shape [3,2]: a slice of the [6,2] variable cannot be read from it (a lone partition "
        "would take it whole, select_single_partition_plain_equal_shape).",
        ["error", "list_selection", "overlapping_regexes", "partial_partition",
         "shape_mismatch"],
        old=[Var("w", pattern([3, 2], 1., 1.))],
        new=[Var("w", full([6, 2], -1.), parts=2)],
        vars_to_warm_start=["w/part_1", "w/part_1"], expect="tf_error", match="w"))

    add(Case(
        "vocab_cols_partition_twice",
        "vars_to_warm_start = [\"emb/part_[12]\", \"emb/part_2\"] over a 3-part axis-1 vocab "
        "variable: part_2 is held twice, so the selected rows count 2 + 2 + 2 = 6 and the "
        "trailing run part_1, part_2 passes TF's row-count check (as one partition held twice "
        "would); each partition reads its own rows of the old tensor.",
        ["list_selection", "overlapping_regexes", "partial_partition", "vocab_cols", "axis1",
         "new_partitioned"],
        old=[Var("emb", pattern([6, 2], 1., 0.))],
        new=[Var("emb", full([6, 3], -1.), parts=3)],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vocab={"emb": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        vars_to_warm_start=["emb/part_[12]", "emb/part_2"]))

    add(Case(
        "error_rename_to_partition_name",
        "prev_var_name b = \"a/part_0\", the old a being saved in 2 partitions: a checkpoint "
        "names a partitioned variable by its full name only, so TF raises ValueError \"Tensor "
        "a/part_0 is not found\" (the tool stores partitions as a/part_<k>, and must not take "
        "one for a tensor of its own).",
        ["error", "rename", "old_partitioned", "partition_name"],
        old=[Var("a", pattern([6, 2], 1., 1.), parts=2)],
        new=[Var("b", full([3, 2], -1.))],
        prev={"b": "a/part_0"}, expect="tf_error", match="a/part_0"))

    overlap_kw = dict(old=momentum_old, new=momentum_new(False),
                      non_trainable=[".*/Momentum", "global_step"])
    add(Case(
        "differs_list_overlapping_regexes",
        "vars_to_warm_start = [\"v1\", \"v.*\"]: v1 is matched by both patterns. TF collects "
        "it twice and raises ValueError \"At least two variables have the same name: v1\"; the "
        "tool selects it once. Expected = TF with the equivalent [\"v.*\"].",
        ["list_selection", "overlapping_regexes", "differs"],
        vars_to_warm_start=["v1", "v.*"], expect="differs",
        differs_from_tf="a variable matched by several patterns is selected once (TF raises)",
        tf_variant=Case("differs_list_overlapping_regexes", "", [],
                        vars_to_warm_start=["v.*"], **overlap_kw),
        to_tool=lambda d: d, **overlap_kw))

    add(Case(
        "select_string_negative_lookahead",
        "vars_to_warm_start = \"^(?!.*Momentum).*\" (one string = TRAINABLE only; Momentum slots "
        "are trainable here): v1, v2 are warm-started, the Momentum variables and the "
        "non-trainable global_step keep their initial values.",
        ["string_selection", "lookahead", "trainable_only"],
        old=momentum_old, new=momentum_new(True),
        vars_to_warm_start="^(?!.*Momentum).*", non_trainable=["global_step"],
        check={"v1": full([10, 1], 1.), "v1/Momentum": full([10, 1], 0.),
               "v2": full([10, 1], 1.), "v2/Momentum": full([10, 1], 0.)}))

    add(Case(
        "select_list_lookbehind_dollar",
        "vars_to_warm_start = [\".*(?<!Momentum)$\"]: TF matches \"v1/Momentum:0\", whose end "
        "is \":0\", so the look-behind never excludes anything: every GLOBAL variable "
        "(Momentum slots and global_step included) is warm-started.",
        ["list_selection", "lookbehind", "dollar_anchor", "graph_name_with_colon0",
         "global_variables"],
        old=momentum_old, new=momentum_new(False),
        vars_to_warm_start=[".*(?<!Momentum)$"], non_trainable=[".*/Momentum", "global_step"],
        check={"v1/Momentum": full([10, 1], 1.), "v2/Momentum": full([10, 1], 1.),
               "global_step": np.array(77, np.int64)}))

    dollar_kw = dict(old=momentum_old, new=momentum_new(False),
                     non_trainable=[".*/Momentum", "global_step"])
    add(Case(
        "differs_list_dollar_anchor_plain_name",
        "vars_to_warm_start = [\"v1$\", \"v2:0$\"]: the tool tries each pattern against the "
        "plain name (\"v1\") and the graph name (\"v1:0\"), so \"v1$\" selects v1; TF sees "
        "only \"v1:0\" and selects just v2. Expected = TF with [\"v1:0$\", \"v2:0$\"].",
        ["list_selection", "dollar_anchor", "graph_name_with_colon0", "differs"],
        vars_to_warm_start=["v1$", "v2:0$"], expect="differs",
        differs_from_tf="patterns are also tried against the plain variable name",
        tf_variant=Case("differs_list_dollar_anchor_plain_name", "", [],
                        vars_to_warm_start=["v1:0$", "v2:0$"], **dollar_kw),
        to_tool=lambda d: d,
        check={"v1": full([10, 1], 1.), "v2": full([10, 1], 1.),
               "v2/Momentum": full([10, 1], 0.)}, **dollar_kw))

    add(Case(
        "select_partial_partitions",
        "vars_to_warm_start = \".*part_[12].*\" matches only partitions 1 and 2 of a 3-part "
        "plain variable and of a 3-part vocab variable: only those partitions are warm-started "
        "(the plain ones by slice, the vocab ones with their correct row offsets); part_0 keeps "
        "its initial value.",
        ["string_selection", "partition_name", "partial_partition", "vocab_rows",
         "new_partitioned"],
        old=[Var("w", pattern([6, 2], 1., 1.)), Var("emb", FRUIT_WEIGHTS)],
        new=[Var("w", full([6, 2], -1.), parts=3), Var("emb", full([6, 1], -1.), parts=3)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt")},
        vars_to_warm_start=".*part_[12].*",
        check={"w": np.concatenate([full([2, 2], -1.), pattern([6, 2], 1., 1.)[2:]]),
               "emb": np.array([[-1], [-1], [1.], [.5], [0], [0]], F32)}))

    add(Case(
        "select_single_partition_vocab",
        "vars_to_warm_start = \".*part_1.*\" matches only the second of 3 partitions of a vocab "
        "variable: only that partition is warm-started, with its correct row offset.",
        ["string_selection", "partition_name", "partial_partition", "vocab_rows",
         "new_partitioned"],
        old=[Var("emb", FRUIT_WEIGHTS)],
        new=[Var("emb", full([6, 1], -1.), parts=3)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt")},
        vars_to_warm_start=".*part_1.*",
        check={"emb": np.array([[-1], [-1], [1.], [.5], [-1], [-1]], F32)}))

    add(Case(
        "select_partial_partitions_short_new_vocab",
        "vars_to_warm_start = \".*part_0.*\" over a 2-part vocab variable whose new vocabulary "
        "file has 4 lines for a new_vocab_size of 5: TF reads only the lines of the selected "
        "partition's rows (0..2), so the short file is no error.",
        ["string_selection", "partition_name", "partial_partition", "vocab_rows",
         "new_partitioned"],
        old=[Var("emb", FRUIT_WEIGHTS)],
        new=[Var("emb", full([6, 1], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW[:4])},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt")},
        vars_to_warm_start=".*part_0.*",
        check={"emb": np.array([[2.], [1.5], [1.], [-1], [-1], [-1]], F32)}))

    add(Case(
        "select_partial_partitions_old_row_past_checkpoint",
        "vars_to_warm_start = \".*part_0.*\" over a 2-part vocab variable: a token of the "
        "unselected part_1 (orange) is on old line 4, past the 3-row checkpoint tensor. TF reads "
        "only the selected partition's rows, so this is no error.",
        ["string_selection", "partition_name", "partial_partition", "vocab_rows",
         "new_partitioned"],
        old=[Var("emb", FRUIT_WEIGHTS[:3])],
        new=[Var("emb", full([6, 1], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(["guava", "banana", "apple", "orange",
                                             "raspberry"])},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt")},
        vars_to_warm_start=".*part_0.*",
        check={"emb": np.array([[1.5], [1.], [.5], [-1], [-1], [-1]], F32)}))

    add(Case(
        "select_partial_partitions_old_row_past_checkpoint_before",
        "As select_partial_partitions_old_row_past_checkpoint, the other way round: part_1 is "
        "selected and the token past the checkpoint tensor (orange, old line 4) is in part_0, "
        "whose rows TF does not read.",
        ["string_selection", "partition_name", "partial_partition", "vocab_rows",
         "new_partitioned", "oov_rows"],
        old=[Var("emb", FRUIT_WEIGHTS[:3])],
        new=[Var("emb", full([6, 1], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(["orange", "banana", "apple", "guava",
                                             "raspberry"])},
        vocab={"emb": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt",
                            backup=constant(.25))},
        vars_to_warm_start=".*part_1.*",
        check={"emb": np.array([[-1], [-1], [-1], [1.5], [.25], [.25]], F32)}))

    sc_old = [Var("linear/sc_keys_old", np.array([[.25], [.5], [.75], [1.]], F32)),
              Var("linear/sc_hash", pattern([15, 1], .5, 1.)),
              Var("linear/sc_vocab", np.array([[.5], [1.], [2.], [3.]], F32)),
              Var("global_step", np.array(9, np.int64))]
    sc_new = [Var("linear/sc_keys", full([4, 1], -1.), parts=2),
              Var("linear/sc_hash", full([15, 1], -1.), parts=2),
              Var("linear/sc_vocab", full([6, 1], -1.)),
              Var("global_step", np.array(0, np.int64), trainable=False)]
    sc_files = {"vocab_old.txt": vocab_bytes(FRUIT_OLD, trailing=True),
                "vocab_new.txt": vocab_bytes(FRUIT_NEW + ["blueberry"], trailing=True)}
    add(Case(
        "select_none_vocab_only",
        "TF testWarmStartVarsToWarmstartIsNone: vars_to_warm_start = \"\" (TF None): only the "
        "vocab variable is warm-started; the prev_var_name entry for a trainable non-vocab "
        "variable is accepted and has no effect. TF with \"\" and with None give identical "
        "results.",
        ["none_selection", "vocab_rows", "prev_name_no_effect", "tf_test"],
        old=sc_old, new=sc_new, files=sc_files,
        vars_to_warm_start="", non_trainable=["global_step"],
        prev={"linear/sc_keys": "linear/sc_keys_old"},
        vocab={"linear/sc_vocab": Vocab("vocab_new.txt", 6, 0, "vocab_old.txt")},
        also_none=True,
        check={"linear/sc_vocab": np.array([[3], [2], [1], [.5], [0], [0]], F32),
               "linear/sc_keys": full([4, 1], -1.), "linear/sc_hash": full([15, 1], -1.)}))

    add(Case(
        "select_empty_list_nothing",
        "vars_to_warm_start = [] (an empty list of regexes) selects no variable at all: every "
        "variable keeps its initial value.",
        ["empty_list_selection"],
        old=sc_old, new=sc_new, vars_to_warm_start=[], non_trainable=["global_step"]))

    add(Case(
        "select_more_settings_partitioned",
        "TF testWarmStartMoreSettings: regex \".*(sc_keys|sc_vocab).*\", 2-way partitioning, a "
        "rename for sc_keys and a vocab for sc_vocab (6 new tokens, no OOV); sc_hash keeps its "
        "initial value.",
        ["string_selection", "alternation", "rename", "vocab_rows", "new_partitioned",
         "tf_test"],
        old=sc_old,
        new=[Var("linear/sc_keys", full([4, 1], -1.), parts=2),
             Var("linear/sc_hash", full([15, 1], -1.), parts=2),
             Var("linear/sc_vocab", full([6, 1], -1.), parts=2),
             Var("global_step", np.array(0, np.int64), trainable=False)],
        files=sc_files, vars_to_warm_start=".*(sc_keys|sc_vocab).*",
        non_trainable=["global_step"],
        prev={"linear/sc_keys": "linear/sc_keys_old"},
        vocab={"linear/sc_vocab": Vocab("vocab_new.txt", 6, 0, "vocab_old.txt")},
        check={"linear/sc_vocab": np.array([[3], [2], [1], [.5], [0], [0]], F32),
               "linear/sc_keys": np.array([[.25], [.5], [.75], [1.]], F32)}))

    # ---------------------------------------------------------------- renames
    add(Case(
        "rename_prev_var_name_two_from_one",
        "var_name_to_prev_var_name: new_scope/x (2 parts) and new_scope/x_copy (3 parts) both "
        "load old_scope/x; new_scope/b loads old_scope/b; a renamed vocab variable; 'same' "
        "keeps its name.",
        ["rename", "two_vars_one_tensor", "new_partitioned", "vocab_rows", "rename_vocab"],
        old=[Var("old_scope/x", pattern([4, 2], .5, 1.)),
             Var("old_scope/b", pattern([2], 1., 7.)),
             Var("old_scope/emb", pattern([4, 2], .25, .25), parts=2),
             Var("same", pattern([3], 1., 40.))],
        new=[Var("new_scope/x", full([4, 2], -1.), parts=2),
             Var("new_scope/x_copy", full([4, 2], -1.), parts=3),
             Var("new_scope/b", full([2], -1.)),
             Var("new_scope/emb", full([5, 2], -1.)),
             Var("same", full([3], -1.))],
        files={"vocab/old.txt": vocab_bytes(FRUIT_OLD, trailing=True),
               "vocab/new.txt": vocab_bytes(["banana", "kiwi", "apple", "orange", "guava"])},
        prev={"new_scope/x": "old_scope/x", "new_scope/x_copy": "old_scope/x",
              "new_scope/b": "old_scope/b", "new_scope/emb": "old_scope/emb"},
        vocab={"new_scope/emb": Vocab("vocab/new.txt", 5, 0, "vocab/old.txt",
                                      backup=constant(0.42))},
        check={"new_scope/x": pattern([4, 2], .5, 1.), "new_scope/x_copy": pattern([4, 2], .5, 1.),
               "new_scope/emb": np.array([[.75, 1.], [.42, .42], [.25, .5], [1.75, 2.],
                                          [1.25, 1.5]], F32)}))

    # ---------------------------------------------------------------- vocab rows
    add(Case(
        "vocab_rows_tf_warm_start_var_with_vocab",
        "TF testWarmStartVarWithVocab exactly: old apple banana guava orange = "
        "[.5,1,1.5,2], new orange guava banana apple raspberry (size 5) -> "
        "[[2],[1.5],[1],[0.5],[0]]. Vocab files without trailing newline, as TF's tests.",
        ["vocab_rows", "reorder", "new_token", "default_backup_zeros", "tf_test",
         "no_trailing_newline"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS)],
        new=[Var("fruit_weights", full([5, 1], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD), "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"fruit_weights": Vocab("new_vocab.txt", 5, 0, "old_vocab.txt")},
        check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0]], F32)}))

    add(Case(
        "vocab_rows_tf_constrained_old_vocab_size",
        "TF testWarmStartVarWithVocabConstrainedOldVocabSize: old_vocab_size = 2 (only apple, "
        "banana are known) -> [[0],[0],[1],[0.5],[0]].",
        ["vocab_rows", "old_vocab_size", "tf_test"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS)],
        new=[Var("fruit_weights", full([5, 1], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD), "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"fruit_weights": Vocab("new_vocab.txt", 5, 0, "old_vocab.txt", old_vocab_size=2)},
        check={"fruit_weights": np.array([[0], [0], [1], [.5], [0]], F32)}))

    add(Case(
        "vocab_rows_reorder_new_tokens_oov_truncated",
        "Vocab rows on a [6+2, 3] matrix: reordered and new tokens, 2 OOV buckets, constant "
        "backup 0.42, old_vocab_size = 6 of a 7-line old vocab whose 7th line duplicates a token "
        "(never read, so no error); the new vocab file has 2 lines past new_vocab_size.",
        ["vocab_rows", "reorder", "new_token", "oov_rows", "constant_backup", "old_vocab_size",
         "duplicate_outside_window", "new_vocab_longer_than_size", "trailing_newline"],
        old=[Var("emb", pattern([6, 3], 1., 1.))],
        new=[Var("emb", full([8, 3], -1.)), Var("other", full([2], -1.))],
        files={"old.vocab": vocab_bytes(["a", "b", "c", "d", "e", "f", "b"], trailing=True),
               "new.vocab": vocab_bytes(["f", "x", "d", "a", "y", "c", "z", "b"], trailing=True)},
        vocab={"emb": Vocab("new.vocab", 6, 2, "old.vocab", old_vocab_size=6,
                            backup=constant(0.42))},
        vars_to_warm_start="emb",
        check={"emb": np.array([[16, 17, 18], [.42] * 3, [10, 11, 12], [1, 2, 3], [.42] * 3,
                                [7, 8, 9], [.42] * 3, [.42] * 3], F32)}))

    add(Case(
        "vocab_rows_partitioned_tf_current_oov",
        "TF testWarmStartVarWithVocabCurrentVarPartitioned (+ old partitioned): new [6,1] in 2 "
        "parts, vocab 5 + 1 OOV -> part0 [[2],[1.5],[1]], part1 [[0.5],[0],[0]].",
        ["vocab_rows", "new_partitioned", "old_partitioned", "oov_rows", "tf_test"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS, parts=2)],
        new=[Var("fruit_weights", full([6, 1], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD), "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab={"fruit_weights": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt",
                                      backup=zeros())},
        check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0], [0]], F32)}))

    add(Case(
        "vocab_rows_partitioned_offset_eq_and_gt_vocab",
        "Vocab rows, new [9,2] in 3 parts (offsets 0,3,6), new_vocab_size 3 + 6 OOV, ones "
        "backup, old partitioned in 3 parts: part_1 starts exactly at the vocab size (0 rows "
        "loaded + 3 OOV rows), part_2 starts past it (OOV-only partition).",
        ["vocab_rows", "new_partitioned", "old_partitioned", "oov_rows", "ones_backup",
         "offset_eq_vocab_size", "oov_only_partition"],
        old=[Var("emb", pattern([4, 2], .5, .5), parts=3)],
        new=[Var("emb", full([9, 2], -1.), parts=3)],
        files={"old_vocab.txt": vocab_bytes(["w", "x", "y", "z"], trailing=True),
               "new_vocab.txt": vocab_bytes(["z", "q", "x"], trailing=True)},
        vocab={"emb": Vocab("new_vocab.txt", 3, 6, "old_vocab.txt", backup=ones())},
        check={"emb": np.array([[3.5, 4], [1, 1], [1.5, 2]] + [[1, 1]] * 6, F32)}))

    add(Case(
        "vocab_rows_partitioned_2parts_offset_eq_vocab",
        "checkpoint_ops test_initializer_with_oov_only_partition style: new [10,5] in 2 parts, "
        "vocab 5 + 5 OOV, so part_1 starts exactly at the vocab size (0 rows loaded + 5 OOV "
        "rows); backup random_uniform(42, 42).",
        ["vocab_rows", "new_partitioned", "offset_eq_vocab_size", "oov_rows",
         "random_uniform_backup"],
        old=[Var("some_scope/embeddings", pattern([5, 5], 1., 0.))],
        new=[Var("some_scope/embeddings", full([10, 5], -1.), parts=2)],
        files={"old.txt": vocab_bytes(["zero", "one", "two", "three"], trailing=True),
               "new.txt": vocab_bytes(["zero", "one", "two", "three", "four"], trailing=True)},
        vocab={"some_scope/embeddings": Vocab("new.txt", 5, 5, "old.txt",
                                              backup=uniform_cc(42., 5))},
        check={"some_scope/embeddings": np.concatenate(
            [pattern([5, 5], 1., 0.)[:4], full([6, 5], 42.)])}))

    add(Case(
        "vocab_rows_partitioned_large_oov",
        "checkpoint_ops test_load_embedding_initializer_large_oov style: new one zero two four "
        "(size 4) + 5 OOV, old zero one, new [9,4] in 2 parts ([5,4]): part_0 holds the 4 vocab "
        "rows and 1 OOV row, part_1 (offset 5 > 4) is OOV-only.",
        ["vocab_rows", "new_partitioned", "oov_only_partition", "constant_backup"],
        old=[Var("emb", pattern([2, 4], 1., 0.))],
        new=[Var("emb", full([9, 4], -1.), parts=2)],
        files={"old.txt": vocab_bytes(["zero", "one"], trailing=True),
               "new.txt": vocab_bytes(["one", "zero", "two", "four"], trailing=True)},
        vocab={"emb": Vocab("new.txt", 4, 5, "old.txt", backup=constant(0.42))},
        check={"emb": np.concatenate([pattern([2, 4], 1., 0.)[::-1], full([7, 4], .42)])}))

    # ---------------------------------------------------------------- vocab columns
    add(Case(
        "vocab_cols_tf_column_vocab",
        "TF testWarmStartVarWithColumnVocab exactly: old cols apple orange, new cols orange "
        "apple banana, axis 1 -> [[.3,.5,0],[.8,1,0],[1.2,1.5,0],[2.3,2,0]].",
        ["vocab_cols", "axis1", "tf_test"],
        old=[Var("fruit_output_layer", COL_CKPT)],
        new=[Var("fruit_output_layer", full([4, 3], -1.))],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        check={"fruit_output_layer": np.array(
            [[.3, .5, 0], [.8, 1, 0], [1.2, 1.5, 0], [2.3, 2, 0]], F32)}))

    add(Case(
        "vocab_cols_partitioned_oov",
        "Vocab on columns (axis 1) with 2 OOV columns and constant backup 0.42, new [4,5] "
        "partitioned along rows in 3 parts, old [4,2] in 2 parts.",
        ["vocab_cols", "axis1", "oov_cols", "new_partitioned", "old_partitioned",
         "constant_backup"],
        old=[Var("fruit_output_layer", COL_CKPT, parts=2)],
        new=[Var("fruit_output_layer", full([4, 5], -1.), parts=3)],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"], trailing=True),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"], trailing=True)},
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 2, "old_vocab.txt", axis=1,
                                           backup=uniform_cc(0.42, 11))},
        check={"fruit_output_layer": np.array(
            [[.3, .5, .42, .42, .42], [.8, 1, .42, .42, .42], [1.2, 1.5, .42, .42, .42],
             [2.3, 2, .42, .42, .42]], F32)}))

    add(Case(
        "vocab_cols_old_vocab_size_ignored",
        "axis 1 with old_vocab_size = 1: TF silently ignores old_vocab_size for columns, so the "
        "result is the same as with the whole old vocab.",
        ["vocab_cols", "axis1", "old_vocab_size_ignored_axis1"],
        old=[Var("fruit_output_layer", COL_CKPT)],
        new=[Var("fruit_output_layer", full([4, 3], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt",
                                           old_vocab_size=1, axis=1)},
        check={"fruit_output_layer": np.array(
            [[.3, .5, 0], [.8, 1, 0], [1.2, 1.5, 0], [2.3, 2, 0]], F32)}))

    for size, label in [(0, "zero"), (-2, "minus_2")]:
        add(Case(
            "vocab_cols_old_vocab_size_%s_ignored" % label,
            "axis 1 with old_vocab_size = %d: TF ignores old_vocab_size for columns (it passes "
            "-1 to the remapping), so even a value it refuses for rows is accepted and the "
            "result is the same as with the whole old vocab." % size,
            ["vocab_cols", "axis1", "old_vocab_size_ignored_axis1"],
            old=[Var("fruit_output_layer", COL_CKPT)],
            new=[Var("fruit_output_layer", full([4, 3], -1.))],
            files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
                   "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
            vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt",
                                               old_vocab_size=size, axis=1)},
            check={"fruit_output_layer": np.array(
                [[.3, .5, 0], [.8, 1, 0], [1.2, 1.5, 0], [2.3, 2, 0]], F32)}))

    # ---------------------------------------------------------------- embeddings
    emb_old = np.array([[.5, .4], [1., 1.1], [2., 2.2], [3., 3.3]], F32)
    add(Case(
        "embedding_tf_constant_backup_with_linear",
        "TF testWarmStartEmbeddingColumnLinearModel: regex \".*sc_vocab.*\", embedding [6,2] in "
        "2 parts with vocab (6 new tokens) and backup random_uniform(0.42, 0.42) -> "
        "[[3,3.3],[2,2.2],[1,1.1]], [[.5,.4],[.42,.42],[.42,.42]]; the linear weight [2,1] (2 "
        "parts) is copied; bias_weights does not match the regex.",
        ["vocab_rows", "embedding", "random_uniform_backup", "new_partitioned", "plain_copy",
         "string_selection", "tf_test"],
        old=[Var("input_layer/sc_vocab_embedding/embedding_weights", emb_old),
             Var("linear_model/sc_vocab_embedding/weights", np.array([[.69], [.71]], F32)),
             Var("linear_model/bias_weights", np.array([1.5], F32))],
        new=[Var("input_layer/sc_vocab_embedding/embedding_weights", full([6, 2], -1.),
                 parts=2),
             Var("linear_model/sc_vocab_embedding/weights", full([2, 1], -1.), parts=2),
             Var("linear_model/bias_weights", full([1], -1.))],
        files={"vocab_old.txt": vocab_bytes(FRUIT_OLD),
               "vocab_new.txt": vocab_bytes(FRUIT_NEW + ["blueberry"])},
        vars_to_warm_start=".*sc_vocab.*",
        vocab={"input_layer/sc_vocab_embedding/embedding_weights":
               Vocab("vocab_new.txt", 6, 0, "vocab_old.txt", backup=uniform_cc(0.42, 1))},
        check={"input_layer/sc_vocab_embedding/embedding_weights": np.array(
            [[3, 3.3], [2, 2.2], [1, 1.1], [.5, .4], [.42, .42], [.42, .42]], F32),
            "linear_model/sc_vocab_embedding/weights": np.array([[.69], [.71]], F32),
            "linear_model/bias_weights": full([1], -1.)}))

    add(Case(
        "embedding_oov_ones_backup",
        "Embedding [5 + 2 OOV, 3] unpartitioned with ones backup; the old embedding is stored "
        "in 2 parts; old_vocab_size equals the old file's length.",
        ["vocab_rows", "embedding", "oov_rows", "ones_backup", "old_partitioned"],
        old=[Var("emb/embedding_weights", pattern([4, 3], .5, -1.), parts=2)],
        new=[Var("emb/embedding_weights", full([7, 3], -1.))],
        files={"old_vocab.txt": vocab_bytes(["cat", "dog", "eel", "fox"], trailing=True),
               "new_vocab.txt": vocab_bytes(["eel", "cat", "gnu", "fox", "ant"], trailing=True)},
        vocab={"emb/embedding_weights": Vocab("new_vocab.txt", 5, 2, "old_vocab.txt",
                                              old_vocab_size=4, backup=ones())},
        check={"emb/embedding_weights": np.array(
            [[2, 2.5, 3], [-1, -.5, 0], [1, 1, 1], [3.5, 4, 4.5], [1, 1, 1], [1, 1, 1],
             [1, 1, 1]], F32)}))

    # ---------------------------------------------------------------- sharded checkpoints
    shard_old = [Var("encoder/w", pattern([4, 3], 1., 1.), parts=2),
                 Var("encoder/b", pattern([3], .5, .5)),
                 Var("emb", pattern([4, 2], .25, 0.), parts=3),
                 Var("head", pattern([2, 2], 1., 50.)),
                 Var("global_step", np.array(5, np.int64))]
    shard_new = [Var("encoder/w", full([4, 3], -1.)),
                 Var("encoder/b", full([3], -1.)),
                 Var("emb", full([6, 2], -1.), parts=2),
                 Var("head", full([2, 2], -1.)),
                 Var("global_step", np.array(0, np.int64), trainable=False)]
    shard_files = {"old_vocab.txt": vocab_bytes(["p", "q", "r", "s"], trailing=True),
                   "new_vocab.txt": vocab_bytes(["s", "r", "t", "p"], trailing=True)}
    shard_vocab = {"emb": Vocab("new_vocab.txt", 4, 2, "old_vocab.txt", backup=constant(0.42))}
    shard_check = {"encoder/w": pattern([4, 3], 1., 1.),
                   "emb": np.array([[1.5, 1.75], [1, 1.25], [.42, .42], [0, .25], [.42, .42],
                                    [.42, .42]], F32)}
    two_shards = {"model-00001-of-00002.safetensors": ["emb/part_0", "emb/part_2",
                                                       "encoder/w/part_1", "global_step"],
                  "model-00002-of-00002.safetensors": ["emb/part_1", "encoder/b",
                                                       "encoder/w/part_0", "head"]}
    add(Case(
        "sharded_old_index_dir",
        "Old checkpoint = directory old/ with 2 shards and model.safetensors.index.json (the "
        "plan names the directory); partitions of one old variable lie in different shards.",
        ["sharded_checkpoint", "index_json", "old_partitioned", "vocab_rows", "plain_copy"],
        old=shard_old, new=shard_new, files=shard_files, vocab=shard_vocab,
        non_trainable=["global_step"], layout="index_dir", shards=two_shards,
        check=shard_check))
    add(Case(
        "sharded_old_index_json_path",
        "Old checkpoint named by the path of its model.safetensors.index.json (2 shards).",
        ["sharded_checkpoint", "index_json_path", "old_partitioned", "vocab_rows"],
        old=shard_old, new=shard_new, files=shard_files, vocab=shard_vocab,
        non_trainable=["global_step"], layout="index_json", shards=two_shards,
        check=shard_check))
    add(Case(
        "sharded_old_no_index",
        "Old checkpoint = directory old/ with 3 *.safetensors shards and no index.",
        ["sharded_checkpoint", "no_index", "old_partitioned", "vocab_rows"],
        old=shard_old, new=shard_new, files=shard_files, vocab=shard_vocab,
        non_trainable=["global_step"], layout="noindex_dir",
        shards={"a.safetensors": ["emb/part_0", "encoder/b"],
                "b.safetensors": ["emb/part_1", "encoder/w/part_0", "global_step"],
                "c.safetensors": ["emb/part_2", "encoder/w/part_1", "head"]},
        check=shard_check))

    # ---------------------------------------------------------------- vocab file parsing
    add(Case(
        "vocab_crlf_new_vocab",
        "New vocab with \\r\\n line endings (and a trailing \\r\\n), old vocab with \\n and no "
        "trailing newline: the \\r is not part of the token.",
        ["vocab_rows", "crlf", "no_trailing_newline", "trailing_newline", "tf_test"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS)],
        new=[Var("fruit_weights", full([5, 1], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW, sep="\r\n", trailing=True)},
        vocab={"fruit_weights": Vocab("new_vocab.txt", 5, 0, "old_vocab.txt")},
        check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0]], F32)}))

    add(Case(
        "vocab_token_bytes_exact",
        "Old vocab with \\r\\n endings and no trailing newline; tokens are compared byte-exactly: "
        "\" guava\" (leading space) does not match \"guava\", a token containing a tab matches "
        "the whole line, UTF-8 tokens match, and \"kiwi\\r\\r\\n\" yields \"kiwi\\r\" (only one "
        "\\r is stripped) which does not match \"kiwi\".",
        ["vocab_rows", "crlf", "no_trailing_newline", "whitespace_significant", "tab_in_token",
         "utf8", "single_cr_stripped"],
        old=[Var("w", pattern([7, 2], 1., 1.))],
        new=[Var("w", full([7, 2], -1.))],
        files={"old_vocab.txt": b"apple\r\nbanana\r\n guava\r\na\tb\r\np\xc3\xaache\r\n"
                                b"kiwi\r\r\norange",
               "new_vocab.txt": b"orange\nkiwi\nguava\np\xc3\xaache\na\tb\nbanana\napple\n"},
        vocab={"w": Vocab("new_vocab.txt", 7, 0, "old_vocab.txt", backup=constant(0.42))},
        check={"w": np.array([[13, 14], [.42, .42], [.42, .42], [9, 10], [7, 8], [3, 4],
                              [1, 2]], F32)}))

    # ---------------------------------------------------------------- errors raised by TF
    fw_old = [Var("fruit_weights", FRUIT_WEIGHTS)]
    fw_new = [Var("fruit_weights", full([5, 1], -1.))]
    fw_files = {"old_vocab.txt": vocab_bytes(FRUIT_OLD), "new_vocab.txt": vocab_bytes(FRUIT_NEW)}

    def fw_vocab(**kw):
        args = dict(new_vocab="new_vocab.txt", new_vocab_size=5, num_oov_buckets=0,
                    old_vocab="old_vocab.txt")
        args.update(kw)
        return {"fruit_weights": Vocab(**args)}

    add(Case(
        "error_unused_prev_var_name",
        "A misspelled var_name_to_prev_var_name key (fruit_weigths): TF raises ValueError "
        "\"... were not used ... Perhaps you misspelled them?\".",
        ["error", "unused_prev_var_name"],
        old=fw_old, new=[Var("fruit_weights", full([4, 1], -1.))],
        prev={"fruit_weigths": "fruit_weights"},
        expect="tf_error", match="fruit_weigths"))

    add(Case(
        "error_unused_vocab_key",
        "A misspelled var_name_to_vocab_info key (fruit_weigths): TF raises ValueError "
        "\"... were not used ...\".",
        ["error", "unused_vocab_key"],
        old=fw_old, new=[Var("fruit_weights", full([4, 1], -1.))], files=fw_files,
        vocab={"fruit_weigths": Vocab("new_vocab.txt", 5, 0, "old_vocab.txt")},
        expect="tf_error", match="fruit_weigths"))

    add(Case(
        "error_vocab_key_not_selected",
        "A vocab entry for a variable that vars_to_warm_start does not select (\"dense.*\"): TF "
        "counts it as unused and raises ValueError.",
        ["error", "unused_vocab_key", "string_selection"],
        old=fw_old + [Var("dense/w", full([2], 1.))],
        new=fw_new + [Var("dense/w", full([2], -1.))], files=fw_files,
        vars_to_warm_start="dense.*", vocab=fw_vocab(),
        expect="tf_error", match="fruit_weights"))

    add(Case(
        "error_none_selection_prev_name_non_trainable",
        "vars_to_warm_start = \"\" with a prev_var_name entry for the non-trainable global_step: "
        "it is not a candidate (TRAINABLE only), so TF reports it as unused.",
        ["error", "none_selection", "unused_prev_var_name", "non_trainable"],
        old=fw_old + [Var("old_step", np.array(3, np.int64))],
        new=fw_new + [Var("global_step", np.array(0, np.int64), trainable=False)],
        files=fw_files, vars_to_warm_start="", non_trainable=["global_step"],
        prev={"global_step": "old_step"}, vocab=fw_vocab(),
        expect="tf_error", match="global_step"))

    add(Case(
        "error_empty_list_selection_with_vocab",
        "vars_to_warm_start = [] selects nothing (unlike \"\"/None, which still selects the "
        "trainable variables for vocab warm-starting), so the vocab entry is unused: ValueError.",
        ["error", "empty_list_selection", "unused_vocab_key"],
        old=fw_old, new=fw_new, files=fw_files, vars_to_warm_start=[], vocab=fw_vocab(),
        expect="tf_error", match="fruit_weights"))

    add(Case(
        "error_prev_var_name_empty_value",
        "A prev_var_name entry whose value is \"\": TF treats it as falsy and reports the key as "
        "unused (ValueError).",
        ["error", "unused_prev_var_name", "empty_prev_name"],
        old=fw_old, new=[Var("fruit_weights", full([4, 1], -1.))],
        prev={"fruit_weights": ""}, expect="tf_error", match="fruit_weights"))

    add(Case(
        "error_missing_checkpoint_tensor",
        "A selected trainable variable (dense/kernel2) has no tensor in the old checkpoint: "
        "ValueError \"Tensor dense/kernel2 is not found in ... checkpoint\".",
        ["error", "missing_tensor", "plain_copy"],
        old=[Var("dense/kernel", full([2, 2], 1.))],
        new=[Var("dense/kernel", full([2, 2], -1.)), Var("dense/kernel2", full([2, 2], -1.))],
        expect="tf_error", match="dense/kernel2"))

    add(Case(
        "error_missing_checkpoint_tensor_renamed",
        "prev_var_name points at a tensor the checkpoint lacks (old_scope/missing).",
        ["error", "missing_tensor", "rename"],
        old=[Var("old_scope/w", full([2, 2], 1.))],
        new=[Var("new_scope/w", full([2, 2], -1.), parts=2)],
        prev={"new_scope/w": "old_scope/missing"},
        expect="tf_error", match="old_scope/missing"))

    add(Case(
        "error_missing_checkpoint_tensor_vocab",
        "A vocab variable whose checkpoint tensor is missing: NotFoundError when the "
        "initializer runs.",
        ["error", "missing_tensor", "vocab_rows"],
        old=[Var("other", full([2], 1.))], new=fw_new, files=fw_files,
        vars_to_warm_start="fruit.*", vocab=fw_vocab(),
        expect="tf_error", match="fruit_weights"))

    add(Case(
        "error_shape_mismatch",
        "Variable dense/kernel [3,4] vs checkpoint tensor [4,3]: ValueError \"Shape of variable "
        "... doesn't match ...\".",
        ["error", "shape_mismatch", "plain_copy"],
        old=[Var("dense/kernel", pattern([4, 3]))],
        new=[Var("dense/kernel", full([3, 4], -1.))],
        expect="tf_error", match="dense/kernel"))

    add(Case(
        "error_shape_mismatch_partitioned",
        "Partitioned variable dense/kernel [6,2] (2 parts) vs checkpoint tensor [5,2]: TF "
        "fails when the restore runs.",
        ["error", "shape_mismatch", "new_partitioned"],
        old=[Var("dense/kernel", pattern([5, 2]))],
        new=[Var("dense/kernel", full([6, 2], -1.), parts=2)],
        expect="tf_error", match="dense/kernel"))

    add(Case(
        "error_dtype_mismatch",
        "Variable counter is float32 but the checkpoint tensor is float64: TF fails when the "
        "restore runs.",
        ["error", "dtype_mismatch", "plain_copy"],
        old=[Var("counter", pattern([3], 1., 0., np.float64))],
        new=[Var("counter", full([3], -1.))],
        expect="tf_error", match="counter"))

    add(Case(
        "error_vocab_rows_ckpt_column_mismatch",
        "Vocab rows: variable [5,2] but checkpoint tensor [4,1] (the column count must match "
        "when columns are not remapped): InvalidArgumentError from LoadAndRemapMatrix.",
        ["error", "shape_mismatch", "vocab_rows"],
        old=fw_old, new=[Var("fruit_weights", full([5, 2], -1.))], files=fw_files,
        vocab=fw_vocab(), expect="tf_error", match="fruit_weights"))

    add(Case(
        "error_old_vocab_size_too_large",
        "old_vocab_size = 5 but the old vocab file has 4 lines: InvalidArgumentError \"Invalid "
        "vocab_size in old_vocab.txt: expected 5 but got 4\".",
        ["error", "old_vocab_size"],
        old=fw_old, new=fw_new, files=fw_files, vocab=fw_vocab(old_vocab_size=5),
        expect="tf_error", match=["old_vocab.txt", "old_vocab_size"]))

    add(Case(
        "error_old_vocab_size_zero",
        "old_vocab_size = 0: the vocab-file reader fails on its first read (OutOfRange).",
        ["error", "old_vocab_size"],
        old=fw_old, new=fw_new, files=fw_files, vocab=fw_vocab(old_vocab_size=0),
        expect="tf_error", match=["old_vocab.txt", "old_vocab_size"]))

    add(Case(
        "error_new_vocab_size_too_large",
        "new_vocab_size = 6 but the new vocab file has 5 lines: InvalidArgumentError \"lookup "
        "table size must be larger than last new vocab entry's line\".",
        ["error", "new_vocab_size"],
        old=fw_old, new=[Var("fruit_weights", full([6, 1], -1.))], files=fw_files,
        vocab=fw_vocab(new_vocab_size=6), expect="tf_error",
        match=["new_vocab.txt", "new_vocab_size"]))

    add(Case(
        "error_new_vocab_size_zero",
        "new_vocab_size = 0: ValueError \"Invalid args: Must provide all of [...]\".",
        ["error", "new_vocab_size"],
        old=fw_old, new=[Var("fruit_weights", full([1, 1], -1.))], files=fw_files,
        vocab=fw_vocab(new_vocab_size=0, num_oov_buckets=1), expect="tf_error",
        match="new_vocab_size"))

    add(Case(
        "refused_negative_oov_buckets",
        "num_oov_buckets = -1 on a [4,1] variable (= new_vocab_size 5 + -1). TF accepts: the "
        "negative count only lowers the row limit, and the \"num_row_oov_buckets must be >= "
        "0\" check never sees it (it gets max(0, ...)); it loads the first 4 new tokens. The "
        "tool refuses a negative num_oov_buckets.",
        ["tool_refusal", "num_oov_buckets"],
        old=fw_old, new=[Var("fruit_weights", full([4, 1], -1.))], files=fw_files,
        vocab=fw_vocab(num_oov_buckets=-1), expect="tool_refuses",
        match=["num_oov_buckets", "oov"],
        differs_from_tf="TF accepts num_oov_buckets = -1 when the variable has new_vocab_size "
                        "- 1 rows (it loads them); the tool refuses negative values."))

    add(Case(
        "error_new_vocab_empty_line",
        "An empty line inside the new vocab window: InvalidArgumentError \"Invalid content in "
        "new_vocab.txt: empty line found\".",
        ["error", "empty_line"],
        old=fw_old, new=fw_new,
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": b"orange\nguava\n\nbanana\napple\nraspberry\n"},
        vocab=fw_vocab(), expect="tf_error", match="new_vocab.txt"))

    add(Case(
        "error_new_vocab_empty_line_past_size",
        "An empty line in the new vocab AFTER new_vocab_size lines: TF reads the whole new vocab "
        "file, so this is still an error.",
        ["error", "empty_line", "new_vocab_longer_than_size"],
        old=fw_old, new=[Var("fruit_weights", full([3, 1], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": b"orange\nguava\nbanana\n\napple\n"},
        vocab=fw_vocab(new_vocab_size=3), expect="tf_error", match="new_vocab.txt"))

    add(Case(
        "error_new_vocab_double_trailing_newline",
        "The new vocab ends with \"\\n\\n\" (an empty last line): error.",
        ["error", "empty_line"],
        old=fw_old, new=fw_new,
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW) + b"\n\n"},
        vocab=fw_vocab(), expect="tf_error", match="new_vocab.txt"))

    add(Case(
        "error_old_vocab_empty_line",
        "An empty line (a line that is only \"\\r\") inside the old vocab window: error.",
        ["error", "empty_line", "crlf"],
        old=fw_old, new=fw_new,
        files={"old_vocab.txt": b"apple\r\nbanana\r\n\r\nguava\r\n",
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab=fw_vocab(), expect="tf_error", match="old_vocab.txt"))

    for which in ["new", "old"]:
        tokens = FRUIT_NEW if which == "new" else FRUIT_OLD
        files = dict(fw_files)
        files["%s_vocab.txt" % which] = vocab_bytes(tokens, trailing=True) + b"\r"
        add(Case(
            "vocab_rows_%s_vocab_ends_with_a_bare_cr" % which,
            "The %s vocab ends with \"\\n\\r\": TF's line reader strips the \"\\r\" of "
            "the last line, which is then empty and read as the end of the file, not as an "
            "empty line." % which,
            ["vocab_rows", "crlf"],
            old=fw_old, new=fw_new, files=files, vocab=fw_vocab(),
            check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0]], F32)}))

    add(Case(
        "error_old_vocab_duplicate_token",
        "The old vocab holds \"banana\" twice inside the window (even though nothing needs "
        "it twice): FailedPreconditionError \"HashTable has different value for same key\".",
        ["error", "duplicate_old_token"],
        old=fw_old, new=fw_new,
        files={"old_vocab.txt": vocab_bytes(["apple", "banana", "guava", "banana"]),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab=fw_vocab(), expect="tf_error", match=["banana", "old_vocab.txt"]))

    add(Case(
        "error_new_vocab_duplicate_same_partition",
        "The new vocab holds \"apple\" twice and both rows are in the same (only) partition: "
        "UnimplementedError \"Old ID 0 is mapped to both new ID ...\".",
        ["error", "duplicate_new_token"],
        old=fw_old, new=[Var("fruit_weights", full([6, 1], -1.))],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW + ["apple"])},
        vocab=fw_vocab(new_vocab_size=6), expect="tf_error",
        match=["apple", "new_vocab.txt"]))

    add(Case(
        "error_axis_2",
        "axis = 2: VocabInfo raises ValueError \"The only supported values for the axis argument "
        "are 0 and 1\".",
        ["error", "axis"],
        old=fw_old, new=fw_new, files=fw_files, vocab=fw_vocab(axis=2),
        expect="tf_error", match="axis"))

    add(Case(
        "error_vocab_rows_more_than_vocab_plus_oov",
        "Vocab variable with 7 rows but new_vocab_size 5 + 1 OOV = 6: ValueError \"Trying to "
        "initialize 7 additional rows after 0 rows ...\".",
        ["error", "vocab_row_count"],
        old=fw_old, new=[Var("fruit_weights", full([7, 1], -1.))], files=fw_files,
        vocab=fw_vocab(num_oov_buckets=1), expect="tf_error", match="fruit_weights"))

    def flatten_bias(d):
        return {k: (v.reshape(-1) if k == "fruit_bias" else v) for k, v in d.items()}

    add(Case(
        "differs_vocab_variable_1d",
        "A 1-D vocab variable (a bias [5], axis 0, 1 OOV row). TF fails with IndexError at "
        "v_shape[1]; the tool remaps it as [n, 1]. Expected = TF on the same bias as [5, 1] "
        "(old [4, 1]), flattened.",
        ["vocab_1d", "vocab_rows", "differs"],
        old=[Var("fruit_bias", FRUIT_WEIGHTS[:, 0])], new=[Var("fruit_bias", full([6], -1.))],
        files=fw_files,
        vocab={"fruit_bias": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt",
                                   backup=constant(0.25))},
        expect="differs", differs_from_tf="1-D vocab variables are remapped as [n, 1]",
        tf_variant=Case(
            "differs_vocab_variable_1d", "", [],
            old=[Var("fruit_bias", FRUIT_WEIGHTS)], new=[Var("fruit_bias", full([6, 1], -1.))],
            vocab={"fruit_bias": Vocab("new_vocab.txt", 5, 1, "old_vocab.txt",
                                       backup=constant(0.25))}),
        to_tool=flatten_bias,
        check={"fruit_bias": np.array([2, 1.5, 1, .5, .25, .25], F32)}))

    add(Case(
        "differs_vocab_old_tensor_1d",
        "A 1-D checkpoint tensor (an old bias [4]) for a [5, 1] vocab variable. TF's remapping "
        "needs a rank-2 old tensor and fails; the tool reads it as [4, 1], as it does 1-D "
        "variables. Expected = TF on the old tensor as [4, 1].",
        ["vocab_1d", "vocab_rows", "differs"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS[:, 0])], new=fw_new, files=fw_files,
        vocab=fw_vocab(), expect="differs",
        differs_from_tf="a 1-D checkpoint tensor is read as [n, 1]",
        tf_variant=Case("differs_vocab_old_tensor_1d", "", [], old=fw_old, new=fw_new,
                        vocab=fw_vocab()),
        # only the old tensor is [4, 1]; the variable and the result are [5, 1]
        to_tool=lambda d: {k: (v.reshape(-1) if v.shape == (4, 1) else v)
                           for k, v in d.items()},
        check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0]], F32)}))

    def as_f64(d):
        return {k: v.astype(np.float64) for k, v in d.items()}

    add(Case(
        "differs_vocab_variable_float64",
        "A float64 vocab variable. TF's vocab path is float32-only and fails; the tool remaps "
        "f64 tables. Expected = TF on the float32 table (values exactly representable), cast "
        "to float64.",
        ["vocab_dtype", "vocab_rows", "differs"],
        old=[Var("fruit_weights", FRUIT_WEIGHTS.astype(np.float64))],
        new=[Var("fruit_weights", full([5, 1], -1., np.float64))], files=fw_files,
        vocab=fw_vocab(), expect="differs",
        differs_from_tf="vocab variables may be f64 (and f16, bf16); TF supports f32 only",
        tf_variant=Case("differs_vocab_variable_float64", "", [],
                        old=[Var("fruit_weights", FRUIT_WEIGHTS)],
                        new=[Var("fruit_weights", full([5, 1], -1.))], vocab=fw_vocab()),
        to_tool=as_f64,
        check={"fruit_weights": np.array([[2], [1.5], [1], [.5], [0]], np.float64)}))

    add(Case(
        "error_old_vocab_row_past_checkpoint_tensor",
        "The old vocab has 5 lines but the checkpoint tensor only 4 rows, and the new vocab "
        "needs old line 5: TF fails reading past the tensor (InternalError \"Extent in "
        "dimension 0 out of bounds\").",
        ["error", "old_vocab_longer_than_tensor", "vocab_rows"],
        old=fw_old, new=fw_new,
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD + ["raspberry"]),
               "new_vocab.txt": vocab_bytes(FRUIT_NEW)},
        vocab=fw_vocab(), expect="tf_error", match=["fruit_weights", "old_vocab.txt"]))

    add(Case(
        "error_select_single_partition_plain",
        "vars_to_warm_start = \".*part_1.*\" selects exactly one partition of a plain (no "
        "vocab) 2-part variable: TF unwraps the one-element list into a single variable and "
        "compares the partition's shape [3,2] with the whole checkpoint tensor [6,2]: "
        "ValueError \"Shape of variable weights_w/part_1:0 ((3, 2)) doesn't match\".",
        ["error", "partial_partition", "shape_mismatch"],
        old=[Var("weights_w", pattern([6, 2], 1., 1.))],
        new=[Var("weights_w", full([6, 2], -1.), parts=2)],
        vars_to_warm_start=".*part_1.*", expect="tf_error", match="weights_w"))

    add(Case(
        "error_select_single_partition_axis1",
        "vars_to_warm_start = \".*part_1.*\" selects one partition of an axis-1 vocab variable; "
        "TF then takes the selected partitions' rows as the whole row count and raises "
        "ValueError \"Trying to initialize 2 additional rows after 2 rows ...\".",
        ["error", "partial_partition", "vocab_cols", "axis1"],
        old=[Var("fruit_output_layer", COL_CKPT)],
        new=[Var("fruit_output_layer", full([4, 3], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vars_to_warm_start=".*part_1.*",
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        expect="tf_error", match="fruit_output_layer"))

    # ---------------------------------------------------------------- TF accepts, tool refuses
    add(Case(
        "refused_vocab_rows_fewer_than_vocab_plus_oov",
        "Vocab variable with 4 rows but new_vocab_size 5 + 1 OOV = 6. TF accepts silently "
        "(loads only the first 4 new tokens, no OOV row); the tool refuses.",
        ["tool_refusal", "vocab_row_count"],
        old=fw_old, new=[Var("fruit_weights", full([4, 1], -1.))], files=fw_files,
        vocab=fw_vocab(num_oov_buckets=1), expect="tool_refuses", match="fruit_weights",
        differs_from_tf="TF accepts a vocab variable with fewer rows than new_vocab_size + "
                        "num_oov_buckets and silently loads a prefix; the tool refuses it."))

    add(Case(
        "error_vocab_cols_count_mismatch",
        "axis 1: variable with 2 columns but new_vocab_size 3 + 0 OOV. TF raises too (\"Expected "
        "2nd dim of shape to be new_col_vocab_size ...\"), listed here for completeness of the "
        "column-count check.",
        ["error", "vocab_col_count", "axis1"],
        old=[Var("fruit_output_layer", COL_CKPT)],
        new=[Var("fruit_output_layer", full([4, 2], -1.))],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        expect="tf_error", match="fruit_output_layer"))

    add(Case(
        "refused_new_vocab_duplicate_across_partitions",
        "The new vocab holds \"apple\" twice, in different partitions of the variable. TF "
        "accepts silently (both rows get apple's old row); the tool refuses duplicate tokens "
        "in the new vocab window.",
        ["tool_refusal", "duplicate_new_token", "new_partitioned"],
        old=fw_old, new=[Var("fruit_weights", full([6, 1], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(FRUIT_OLD),
               "new_vocab.txt": vocab_bytes(["apple", "orange", "guava", "banana", "apple",
                                             "kiwi"])},
        vocab=fw_vocab(new_vocab_size=6), expect="tool_refuses",
        match=["apple", "new_vocab.txt"],
        differs_from_tf="TF only fails on a duplicate new-vocab token when both copies land in "
                        "the same partition; across partitions it silently loads the same old "
                        "row twice. The tool refuses any duplicate in the new vocab window."))

    add(Case(
        "refused_old_vocab_col_past_checkpoint_tensor",
        "axis 1: the old column vocab has 3 lines but the checkpoint tensor only 2 columns, and "
        "the new vocab needs old column 3. TF accepts and leaves those cells uninitialised "
        "(garbage); the tool refuses.",
        ["tool_refusal", "old_vocab_longer_than_tensor", "vocab_cols", "axis1"],
        old=[Var("fruit_output_layer", COL_CKPT)],
        new=[Var("fruit_output_layer", full([4, 3], -1.))],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange", "banana"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        expect="tool_refuses", match=["fruit_output_layer", "old_vocab.txt"],
        differs_from_tf="TF writes no value into cells whose old column lies past the "
                        "checkpoint tensor (uninitialised memory); the tool refuses an old "
                        "vocab line that points past the checkpoint tensor."))

    # ---------------------------------------------------------------- found by a later audit
    add(Case(
        "select_single_partition_plain_equal_shape",
        "vars_to_warm_start = \".*part_1.*\" selects one partition [3,2] of a plain [6,2] "
        "variable whose checkpoint tensor is [3,2]: TF hands the lone partition to "
        "init_from_checkpoint as a whole variable, the shapes agree, and the partition takes "
        "the whole checkpoint tensor (not rows 3..6, which it does not have).",
        ["string_selection", "partial_partition", "single_partition", "plain_copy"],
        old=[Var("weights_w", pattern([3, 2], 1., 1.))],
        new=[Var("weights_w", full([6, 2], -1.), parts=2)],
        vars_to_warm_start=".*part_1.*",
        check={"weights_w": np.concatenate([full([3, 2], -1.), pattern([3, 2], 1., 1.)])}))

    add(Case(
        "vocab_cols_leading_partition_short_old",
        "axis 1, partition 0 of a [4,3] variable in two parts selected, checkpoint tensor "
        "[2,3]: TF takes the selected partitions' 2 rows as the whole row count, so an old "
        "tensor of 2 rows is enough.",
        ["vocab_cols", "axis1", "partial_partition", "new_partitioned"],
        old=[Var("fruit_output_layer", pattern([2, 3], 1., 1.))],
        new=[Var("fruit_output_layer", full([4, 3], -1.), parts=2)],
        files={"old_vocab.txt": vocab_bytes(["apple", "orange", "kiwi"]),
               "new_vocab.txt": vocab_bytes(["orange", "apple", "banana"])},
        vars_to_warm_start=".*part_0.*",
        vocab={"fruit_output_layer": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        check={"fruit_output_layer": np.array(
            [[2, 1, 0], [5, 4, 0], [-1, -1, -1], [-1, -1, -1]], F32)}))

    add(Case(
        "error_vocab_rows_zero_columns",
        "axis 0 on a [4,0] variable (3 tokens + 1 OOV bucket): LoadAndRemapMatrix needs "
        "num_cols >= 1 (ValueError).",
        ["error", "vocab_rows", "zero_size"],
        old=[Var("emb", np.zeros([3, 0], F32))],
        new=[Var("emb", np.zeros([4, 0], F32))],
        files={"old_vocab.txt": vocab_bytes(["a", "b", "c"]),
               "new_vocab.txt": vocab_bytes(["c", "x", "a"])},
        vocab={"emb": Vocab("new_vocab.txt", 3, 1, "old_vocab.txt")},
        expect="tf_error", match="column"))

    add(Case(
        "error_vocab_cols_zero_rows",
        "axis 1 on a [0,3] variable: the initializer refuses a first dimension of 0 "
        "(ValueError \"Expected 1st dim of shape to be > 0\").",
        ["error", "vocab_cols", "axis1", "zero_size"],
        old=[Var("emb", np.zeros([0, 2], F32))],
        new=[Var("emb", np.zeros([0, 3], F32))],
        files={"old_vocab.txt": vocab_bytes(["a", "b"]),
               "new_vocab.txt": vocab_bytes(["b", "x", "a"])},
        vocab={"emb": Vocab("new_vocab.txt", 3, 0, "old_vocab.txt", axis=1)},
        expect="tf_error", match="no rows"))

    add(Case(
        "select_verbose_regex_comment",
        "vars_to_warm_start = \"(?x) v1 # only v1\": Python's verbose flag, whose comment "
        "runs to the end of the pattern; re.match selects v1 (the Momentum slots are not "
        "trainable).",
        ["string_selection", "verbose_regex"],
        old=momentum_old, new=momentum_new(False),
        vars_to_warm_start="(?x) v1 # only v1", non_trainable=[".*/Momentum", "global_step"],
        check={"v1": full([10, 1], 1.), "v2": full([10, 1], 0.),
               "v1/Momentum": full([10, 1], 0.)}))

    add(Case(
        "refused_regex_set_operation",
        "vars_to_warm_start = [\"v[1-2--]\"]: Python reads `--` in a class as two literal "
        "hyphens (with a FutureWarning that it may become a set difference) and selects v1, "
        "v2 and their Momentum slots; the tool's regex engine would read a set difference, "
        "so the tool refuses the pattern and asks for the hyphen to be escaped.",
        ["tool_refusal", "list_selection", "regex_dialect"],
        old=momentum_old, new=momentum_new(False),
        vars_to_warm_start=["v[1-2--]"], non_trainable=[".*/Momentum", "global_step"],
        expect="tool_refuses", match=["vars_to_warm_start", "set operation"],
        check={"v1": full([10, 1], 1.), "v1/Momentum": full([10, 1], 1.),
               "v2": full([10, 1], 1.), "v2/Momentum": full([10, 1], 1.)},
        differs_from_tf="a character class holding `[`, `--`, `&&` or `~~` is refused: the "
                        "tool's regex engine reads these as nested classes or set operations, "
                        "Python as literals."))
    return out


# --------------------------------------------------------------------------------------------
# Running TensorFlow
# --------------------------------------------------------------------------------------------


def make_variable(spec):
    value = spec.value

    def init(shape, dtype=None, partition_info=None):
        if partition_info is None:
            assert list(shape) == list(value.shape), (spec.name, shape, value.shape)
            return tf.constant(value)
        off = partition_info.var_offset
        sl = tuple(slice(o, o + s) for o, s in zip(off, shape))
        return tf.constant(np.ascontiguousarray(value[sl]))

    partitioner = tf.compat.v1.fixed_size_partitioner(spec.parts) if spec.parts else None
    return tf.compat.v1.get_variable(spec.name, shape=list(value.shape),
                                     dtype=tf.as_dtype(value.dtype), initializer=init,
                                     partitioner=partitioner, trainable=spec.trainable)


def read_ops():
    """name (as in safetensors: x or x/part_k) -> read op, for every global variable."""
    ops = {}
    for v in tf.compat.v1.global_variables():
        assert v.name.endswith(":0"), v.name
        ops[v.name[:-2]] = v.read_value()
    return ops


def full_value(tensors, name):
    """The logical value of variable `name` from per-partition tensors."""
    if name in tensors:
        return tensors[name]
    parts = []
    k = 0
    while "%s/part_%d" % (name, k) in tensors:
        parts.append(tensors["%s/part_%d" % (name, k)])
        k += 1
    assert parts, name
    return np.concatenate(parts, axis=0)


def check_values(case, result):
    """TF's values must be the ones the case states (`check`)."""
    for name, want in case.check.items():
        got = full_value(result, name)
        np.testing.assert_array_equal(got, np.asarray(want, got.dtype),
                                      err_msg="%s: %s" % (case.name, name))


def tf_error_message(e, replacements):
    if isinstance(e, tf.errors.OpError):
        msg = e.message
        m = re.search(r"Node: '[^']*'\n(.*?)(\n\t \[\[|\Z)", msg, re.S)
        if m:
            msg = m.group(1)
    else:
        msg = str(e)
    for old, new in replacements:
        msg = msg.replace(old, new)
    return msg[:500]


def build_plan_value(case, tf_value):
    """vars_to_warm_start as TF gets it."""
    if case.vars_to_warm_start is OMIT:
        return ".*"
    return tf_value


def run_tf(case, case_dir, work, vars_to_warm_start):
    """Returns (old_tensors, initial, result_or_None, error_or_None)."""
    ckpt = os.path.join(work, "ckpt", "model-0")
    g = tf.Graph()
    with g.as_default():
        for v in case.old:
            make_variable(v)
        reads = read_ops()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            old_tensors = sess.run(reads)
            saver.save(sess, ckpt)
    for v in case.old:
        np.testing.assert_array_equal(full_value(old_tensors, v.name), v.value)

    g = tf.Graph()
    with g.as_default():
        for v in case.new:
            make_variable(v)
        trainable = sorted(v.name[:-2] for v in tf.compat.v1.trainable_variables())
        reads = read_ops()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            initial = sess.run(reads)
        for v in case.new:
            np.testing.assert_array_equal(full_value(initial, v.name), v.value)

        vocab_info = {}
        error = None
        result = None
        try:
            for name, vi in case.vocab.items():
                kw = {}
                if vi.old_vocab_size is not None:
                    kw["old_vocab_size"] = vi.old_vocab_size
                if vi.axis is not None:
                    kw["axis"] = vi.axis
                if vi.backup is not None:
                    kw["backup_initializer"] = vi.backup.make_tf()
                vocab_info[name] = tf.compat.v1.train.VocabInfo(
                    new_vocab=os.path.join(case_dir, vi.new_vocab),
                    new_vocab_size=vi.new_vocab_size, num_oov_buckets=vi.num_oov_buckets,
                    old_vocab=os.path.join(case_dir, vi.old_vocab), **kw)
            tf.compat.v1.train.warm_start(
                ckpt, vars_to_warm_start=vars_to_warm_start,
                var_name_to_vocab_info=vocab_info or None,
                var_name_to_prev_var_name=dict(case.prev) or None)
            with tf.compat.v1.Session(graph=g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                result = sess.run(reads)
        except Exception as e:  # noqa: BLE001 - every TF refusal is recorded
            error = e
    return old_tensors, initial, trainable, result, error


# --------------------------------------------------------------------------------------------
# Writing a case
# --------------------------------------------------------------------------------------------


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def plan_toml(case):
    if case.plan_checkpoint is not None:
        ckpt = case.plan_checkpoint
    elif case.layout == "file":
        ckpt = "old.safetensors"
    elif case.layout == "index_json":
        ckpt = "old/model.safetensors.index.json"
    else:
        ckpt = "old"
    lines = ["# Generated by tests/golden/generate.py (case %s). Do not edit." % case.name,
             "checkpoint = %s" % toml_str(ckpt),
             "model = \"model.safetensors\"",
             "output = \"out.safetensors\""]
    if case.vars_to_warm_start is not OMIT:
        lines.append("vars_to_warm_start = %s" % toml_value(case.vars_to_warm_start))
    if case.non_trainable is not None:
        lines.append("non_trainable = %s" % toml_value(case.non_trainable))
    if case.prev:
        lines += ["", "[prev_var_name]"]
        for k in sorted(case.prev):
            lines.append("%s = %s" % (toml_str(k), toml_str(case.prev[k])))
    for name in sorted(case.vocab):
        vi = case.vocab[name]
        lines += ["", "[vocab.%s]" % toml_str(name),
                  "new_vocab = %s" % toml_str(vi.new_vocab),
                  "new_vocab_size = %d" % vi.new_vocab_size,
                  "num_oov_buckets = %d" % vi.num_oov_buckets,
                  "old_vocab = %s" % toml_str(vi.old_vocab)]
        if vi.old_vocab_size is not None:
            lines.append("old_vocab_size = %d" % vi.old_vocab_size)
        if vi.axis is not None:
            lines.append("axis = %d" % vi.axis)
        if vi.backup is not None:
            lines.append("backup_initializer = { %s }" % ", ".join(
                "%s = %s" % (k, toml_value(v)) for k, v in vi.backup.plan))
    return "\n".join(lines) + "\n"


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def save_tensors(path, tensors):
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, path)


def write_old(case, case_dir, old_tensors):
    if case.layout == "file":
        save_tensors(os.path.join(case_dir, "old.safetensors"), old_tensors)
        return
    old_dir = os.path.join(case_dir, "old")
    os.makedirs(old_dir)
    assigned = sorted(n for names in case.shards.values() for n in names)
    assert assigned == sorted(old_tensors), (case.name, assigned, sorted(old_tensors))
    weight_map = {}
    total = 0
    for fname in sorted(case.shards):
        part = {n: old_tensors[n] for n in case.shards[fname]}
        save_tensors(os.path.join(old_dir, fname), part)
        for n in part:
            weight_map[n] = fname
            total += part[n].nbytes
    if case.layout in ("index_dir", "index_json"):
        write_json(os.path.join(old_dir, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": weight_map})


def check_non_trainable(case, trainable, initial):
    regs = [re.compile(r) for r in (case.non_trainable or [])]
    for v in case.new:
        matched = any(r.fullmatch(v.name) for r in regs)
        assert matched == (not v.trainable), (case.name, v.name)
    # TF's TRAINABLE_VARIABLES (partition names) must be exactly the trainable variables' names.
    want = []
    for v in case.new:
        if v.trainable:
            want += [n for n in initial if n == v.name or re.fullmatch(
                re.escape(v.name) + r"/part_\d+", n)]
    assert sorted(want) == sorted(trainable), (case.name, want, trainable)


def generate(case):
    case_dir = os.path.join(CASES_DIR, case.name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    for rel, data in sorted(case.files.items()):
        p = os.path.join(case_dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    with tempfile.TemporaryDirectory(prefix="warmstart_golden_") as work:
        tf_case = case.tf_variant if case.expect == "differs" else case
        vtws = build_plan_value(tf_case, tf_case.vars_to_warm_start)
        old_tensors, initial, trainable, result, error = run_tf(tf_case, case_dir, work, vtws)
        check_non_trainable(tf_case, trainable, initial)
        if case.expect == "differs":
            assert case.differs_from_tf and error is None, (case.name, error)
            old_tensors, initial, result = (case.to_tool(d) for d in (old_tensors, initial, result))
        if case.also_none:
            _, _, _, result2, error2 = run_tf(case, case_dir, work, None)
            assert (error is None) == (error2 is None), (case.name, error, error2)
            if result is not None:
                for k in result:
                    np.testing.assert_array_equal(result[k], result2[k])
        replacements = [(os.path.join(case_dir, ""), ""), (case_dir, "."),
                        (os.path.join(work, "ckpt", "model-0"), "<tf_checkpoint>"),
                        (work, "<tmp>")]

    write_old(case, case_dir, old_tensors)
    save_tensors(os.path.join(case_dir, "model.safetensors"), initial)
    with open(os.path.join(case_dir, "plan.toml"), "w", encoding="utf-8") as f:
        f.write(plan_toml(case))
    write_json(os.path.join(case_dir, "case.json"),
               {"description": case.description, "covers": case.covers,
                "differs_from_tf": case.differs_from_tf})

    if case.expect in ("ok", "differs"):
        if error is not None:
            raise AssertionError("%s: TF raised %r" % (case.name, error))
        check_values(case, result)
        assert sorted(result) == sorted(initial)
        save_tensors(os.path.join(case_dir, "expected.safetensors"), result)
        return "ok"
    if case.expect == "tf_error":
        if error is None:
            raise AssertionError("%s: TF accepted the case" % case.name)
        info = {"tf_error": type(error).__name__,
                "tf_message": tf_error_message(error, replacements),
                "match": case.match}
        write_json(os.path.join(case_dir, "expected_error.json"), info)
        return "%s: %s" % (info["tf_error"], info["tf_message"].splitlines()[0][:150])
    if case.expect == "tool_refuses":
        if error is not None:
            raise AssertionError("%s: TF raised %r" % (case.name, error))
        assert case.differs_from_tf
        check_values(case, result)  # what TF did instead
        write_json(os.path.join(case_dir, "expected_error.json"),
                   {"tf_error": None, "tf_message": None, "match": case.match})
        got = {k: full_value(result, k) for k in case.vocab}
        return "TF accepted: %s" % {k: v.ravel().tolist() for k, v in got.items()}
    raise ValueError(case.expect)


def main(argv):
    all_cases = cases()
    names = [c.name for c in all_cases]
    assert len(set(names)) == len(names), "duplicate case names"
    selected = [c for c in all_cases if not argv[1:] or any(a in c.name for a in argv[1:])]
    if not argv[1:] and os.path.exists(CASES_DIR):
        shutil.rmtree(CASES_DIR)
    os.makedirs(CASES_DIR, exist_ok=True)
    for case in sorted(selected, key=lambda c: c.name):
        print("%-52s %s" % (case.name, generate(case)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
