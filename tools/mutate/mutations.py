"""Deliberate breaks of stoker's guarantees, each with the tests that must catch it.

``make mutate`` (:mod:`tools.mutate.run`) applies them one at a time to a scratch copy of
``src/`` and runs only the named tests against it: every named test must fail, or the break
is MISSED. A mutation is a list of edits; each edit replaces one exact snippet of one file
(the snippet must occur exactly once, so a refactor that moves it shows up as an ERROR
here instead of a silent pass). Keep snippets small and the reason one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Edit:
    file: str  # relative to src/stoker
    old: str
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    why: str  # the guarantee this breaks
    edits: tuple[Edit, ...]
    tests: tuple[str, ...] = field(default_factory=tuple)  # pytest node ids; each must fail


CLI = "tests/train/test_train_cli.py"
CKPT = "tests/train/test_checkpoint.py"
REFUSAL = "tests/train/test_resume_refusal.py"
UNTRUSTED = "tests/package/test_untrusted_input.py"

MUTATIONS: list[Mutation] = [
    Mutation(
        "rng-not-restored",
        "a resumed run continues the RNG streams (dropout masks) of the interrupted one",
        (Edit("train/trainer.py",
              'restore_rng_state(state["rng"])  # last: nothing after this may draw',
              "pass  # MUTATION: RNG state not restored"),),
        (f"{CLI}::test_stop_after_then_rerun_is_bitwise_equal",
         f"{CLI}::test_kill_9_then_resume_is_bitwise_equal"),
    ),
    Mutation(
        "subset-load-skips-checksums",
        "loading only some keys (eval, generate) still verifies the files it reads",
        (Edit("train/checkpoint/load.py",
              '    marker = _require_marker(path)\n    algo = marker.get("checksum", "none")\n'
              '    files: dict[str, Any] = marker["files"]',
              '    marker = _require_marker(path)\n'
              '    algo = marker.get("checksum", "none") if keys is None else "none"\n'
              '    files: dict[str, Any] = marker["files"]'),),
        (f"{CKPT}::test_corruption_is_caught_when_only_some_keys_are_loaded",),
    ),
    Mutation(
        "numpy-arrays-pickled",
        "checkpoints never pickle or unpickle (numpy arrays included)",
        (Edit("train/checkpoint/codec.py",
              "            arr = np.ascontiguousarray(obj)\n",
              "            arr = np.ascontiguousarray(obj)\n"
              "            import pickle\n"
              '            return {"__ndarray__": {"pickle": base64.b64encode(pickle.dumps(arr))'
              '.decode()}}\n'),
         Edit("train/checkpoint/codec.py",
              '        if tag == "__ndarray__":\n',
              '        if tag == "__ndarray__" and "pickle" in val:\n'
              "            import pickle\n"
              '            return pickle.loads(base64.b64decode(val["pickle"]))\n'
              '        if tag == "__ndarray__":\n')),
        (f"{CKPT}::test_saving_and_loading_never_pickle",),
    ),
    Mutation(
        "did-you-mean-least-similar",
        '"Did you mean" names the closest candidate',
        (Edit("config/targets.py",
              "close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)",
              "close = difflib.get_close_matches(word, sorted(choices), n=len(choices) or 1,"
              " cutoff=0.6)[::-1]"),),
        ("tests/config/test_did_you_mean.py::test_only_the_closest_candidate_is_suggested",
         "tests/config/test_did_you_mean.py::test_cli_suggests_the_closest_of_several"),
    ),
    Mutation(
        "cuda-rng-capture-initialises-cuda",
        "capturing the RNG state of a CPU run never creates a CUDA context",
        (Edit("train/rng.py",
              "if torch.cuda.is_available() and torch.cuda.is_initialized():",
              "if torch.cuda.is_available():"),),
        ("tests/train/test_rng.py::test_capture_does_not_initialise_cuda",),
    ),
    Mutation(
        "nan-loss-does-not-stop",
        "a NaN loss stops the run at once, saving nothing at or after that step",
        (Edit("train/callbacks.py",
              "    request_stop(trainer, reason, failed=True)\n    return reason",
              "    return None  # MUTATION: no stop"),),
        ("tests/train/test_poisoned_checkpoints.py::"
         "test_nan_loss_stops_and_names_the_last_finite_checkpoint",
         "tests/train/test_callbacks.py::test_nan_guard_stops_without_saving_and_names_last_good"),
    ),
    Mutation(
        "run-dir-lock-not-taken",
        "one writer per run directory",
        (Edit("train/trainer.py",
              "plan = self._claim(plan)  # the run directory's lock, before reading or writing there",
              "pass  # MUTATION: no lock"),),
        ("tests/train/test_run_lock.py::test_two_trains_on_one_output_dir",),
    ),
    Mutation(
        "flock-skipped",
        "the run directory lock is an OS lock that a second process cannot take",
        (Edit("train/run_lock.py",
              "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
              "            pass  # MUTATION: no flock\n"),),
        ("tests/train/test_run_lock.py::test_second_lock_is_refused_naming_the_owner",
         "tests/train/test_run_lock.py::test_lock_dies_with_its_process"),
    ),
    Mutation(
        "finite-check-skipped-on-save",
        "a checkpoint is saved only when its model and optimizer state are finite",
        (Edit("train/checkpoint/manager.py",
              "        self._check_finite(step, sinks)  # NaN/inf weights are never saved\n", ""),),
        (f"{CKPT}::test_non_finite_state_is_never_saved",),
    ),
    Mutation(
        "finite-check-skipped-on-load",
        "loading refuses NaN/inf weights, naming file and tensor",
        (Edit("train/checkpoint/load.py",
              "    if not allow_nonfinite:\n        _check_finite(path, tree, tensors)\n", ""),),
        (f"{CKPT}::test_loading_refuses_non_finite_weights_naming_file_and_tensor",
         "tests/train/test_poisoned_checkpoints.py::"
         "test_eval_and_generate_refuse_a_poisoned_checkpoint"),
    ),
    Mutation(
        "oc-env-resolved-in-saved-config",
        "${oc.env:...} values never land resolved in config.yaml, state.json or artifacts",
        (Edit("cli/train_cmd.py",
              "resolved = to_record(cfg)",
              "resolved = __import__('stoker.config.export', fromlist=['x'])"
              ".to_container(cfg, resolve=True)"),),
        ("tests/train/test_secrets_cli.py::test_env_secret_is_used_but_never_written",),
    ),
    Mutation(
        "to-record-resolves-env",
        "config.to_record keeps environment values unresolved",
        (Edit("config/export.py",
              "    marked, found = _mark_env(raw)\n",
              "    marked, found = _mark_env(raw)\n    found = False  # MUTATION\n"),),
        ("tests/config/test_secrets.py::test_record_keeps_environment_values_unresolved",),
    ),
    Mutation(
        "trackers-get-secrets",
        "trackers never receive the values of secret-looking keys",
        (Edit("track/loggers.py",
              "    shown = mask_tree(dict(config or {}))",
              "    shown = dict(config or {})"),),
        ("tests/track/test_masked_config.py::test_trackers_never_receive_secret_values",),
    ),
    Mutation(
        "dryrun-shows-secrets",
        "--dryrun tables mask secret-looking values",
        (Edit("cli/front_door.py",
              "for key, value in flatten(mask_tree(data))]",
              "for key, value in flatten(data)]"),),
        ("tests/train/test_secrets_cli.py::test_env_secret_is_used_but_never_written",),
    ),
    Mutation(
        "untrusted-config-imports",
        "validating an untrusted config imports nothing outside stoker, torch and --trust",
        (Edit("config/validation.py",
              "            check_trusted(target, self.trust)  # before importing anything\n", ""),),
        ("tests/config/test_trust.py::test_untrusted_config_imports_nothing_outside_the_trust_list",),
    ),
    Mutation(
        "untrusted-artifact-eval-imports",
        "stoker eval art://... builds the registry's config untrusted",
        (Edit("package/source.py",
              'trust=tuple(trust) if text.startswith("art://") else None,',
              "trust=None,  # MUTATION"),),
        ("tests/train/test_lineage.py::test_eval_of_a_model_artifact_imports_only_trusted_modules",),
    ),
    Mutation(
        "archive-imports-untrusted",
        "an archive's imports: (the modules of your own model) run only after --trust names them",
        (Edit("config/targets.py",
              "    named += [(f\"imports[{i}]\", str(m)) for i, m in\n",
              "    named += [] and [(f\"imports[{i}]\", str(m)) for i, m in  # MUTATION\n"),),
        ("tests/train/test_user_code.py::test_craft_workflow_trains_evaluates_and_generates",),
    ),
    Mutation(
        "trust-by-name-prefix",
        "an untrusted config's target is judged on what it resolves to, not on how it is "
        "spelled (stoker.launch.executors.process.os.system is os.system)",
        (Edit("config/targets.py",
              "    return _judge_resolved(text, obj, owner, trusted)\n",
              "    return None  # MUTATION: the name prefix decides\n"),),
        ("tests/config/test_trust.py::test_untrusted_config_never_calls_what_its_target_resolves_to",
         "tests/package/test_trust_resolved.py::test_restore_judges_the_resolved_target_before_building",
         "tests/package/test_trust_resolved.py::test_cli_refuses_os_system_however_it_is_spelled",
         "tests/package/test_trust_resolved.py::test_art_uris_of_archives_and_checkpoints_are_judged_the_same"),
    ),
    Mutation(
        "trust-opens-the-never-list",
        "--trust of a parent (stoker, torch, os) never makes os.system or torch.load callable",
        (Edit("config/targets.py",
              "    if denied is not None:\n",
              "    if denied is not None and not all(_under(m, trusted) for m in mods):  # MUTATION\n"),),
        ("tests/config/test_trust.py::test_trusting_a_parent_does_not_open_the_never_list",),
    ),
    Mutation(
        "pack-builds-a-registry-checkpoint-untrusted",
        "stoker pack art://... judges the registry checkpoint's config before building it",
        (Edit("package/packing.py",
              'trust=tuple(trust) if source.startswith("art://") else None)',
              "trust=None)  # MUTATION"),),
        ("tests/package/test_trust_resolved.py::"
         "test_art_uris_of_archives_and_checkpoints_are_judged_the_same",),
    ),
    Mutation(
        "untrusted-resolvers-unchecked",
        "an untrusted config cannot make a _target_ node at resolution time (${oc.decode:...})",
        (Edit("config/targets.py", '    bad += _node_making_resolvers(tree, "")\n',
              "    pass  # MUTATION\n"),),
        ("tests/package/test_trust_resolved.py::"
         "test_a_resolver_cannot_make_a_target_after_the_check",),
    ),
    Mutation(
        "pickle-members-by-name-only",
        "an archive member that holds a pickle is refused by its content, whatever its name",
        (Edit("package/restoring.py", "    found = pickle_format(data)\n",
              "    found = None  # MUTATION\n"),),
        ("tests/package/test_trust_resolved.py::test_pickled_members_are_refused_by_content",),
    ),
    Mutation(
        "sharded-marker-before-all-ranks",
        "a sharded checkpoint's marker is written only after every rank reported its files",
        (Edit("train/checkpoint/manager.py",
              "                for r in reports:\n                    files.update(r[\"files\"])\n",
              "                files.update(reports[0][\"files\"])  # MUTATION: rank 0 only\n"),
         Edit("train/checkpoint/manager.py",
              "                if on_disk != listed:\n",
              "                if False:  # MUTATION\n")),
        ("tests/train/test_checkpoint_scale.py::"
         "test_fsdp2_saves_sharded_and_the_marker_lists_every_ranks_files",),
    ),
    Mutation(
        "dcp-metadata-checksum-unchecked",
        "DCP's pickled metadata is unpickled only after its checksum matched the marker",
        (Edit("train/checkpoint/sharded.py",
              "    buf = read_verified(step_dir, rel, files[rel], algo)\n",
              "    buf = (step_dir / rel).read_bytes()  # MUTATION: no checksum\n"),),
        ("tests/train/test_checkpoint_scale.py::"
         "test_dcp_metadata_is_checked_before_it_is_unpickled",),
    ),
    Mutation(
        "async-save-not-staged",
        "a background save writes a copy taken at the step, not tensors training changes",
        (Edit("train/checkpoint/manager.py",
              'sink.tensors = {n: self._stage(sink.key, n, t) for n, t in sink.tensors.items()}',
              "pass  # MUTATION: no staging copy"),),
        ("tests/train/test_checkpoint_scale.py::"
         "test_background_save_stages_a_copy_and_commits_only_when_written",),
    ),
    Mutation(
        "init-from-ignore-globs-ignored",
        "init_from.ignore keeps the fresh init of the weights its globs name",
        (Edit("train/init_from.py",
              "        return any(fnmatch.fnmatchcase(name, g) for g in globs)\n",
              "        return False  # MUTATION: ignore globs ignored\n"),),
        ("tests/package/test_init_from.py::test_run_dir_source_with_ignore_glob_keeps_fresh_init",),
    ),
    Mutation(
        "init-from-strict-check-skipped",
        "init_from refuses (exit 2, nothing written) weights that do not fit the model",
        (Edit("train/init_from.py",
              "    if problems:\n        raise InitFromError(",
              "    if problems and False:  # MUTATION\n        raise InitFromError("),),
        ("tests/package/test_init_from.py::test_shape_mismatch_and_missing_keys_exit_2_with_nothing_written",
         "tests/package/test_init_from.py::test_hf_dir_needs_resize_vocab_for_a_new_vocabulary"),
    ),
    Mutation(
        "init-from-not-applied",
        "init_from really loads the source's weights before step 0",
        (Edit("train/init_from.py", "                t.copy_(value)\n",
              "                pass  # MUTATION: weights not copied\n"),),
        ("tests/package/test_init_from.py::test_archive_weights_load_bitwise_and_first_loss_is_the_sources",),
    ),
    Mutation(
        "init-from-reapplied-on-resume",
        "a resumed fine-tune continues from its own checkpoint and does not need the source",
        (Edit("train/trainer.py",
              "        if plan is not None and plan.resume_from is not None and \\\n",
              "        if False and plan is not None and plan.resume_from is not None and \\\n"),),
        ("tests/package/test_init_from.py::test_resume_does_not_reapply_init_from",),
    ),
    Mutation(
        "init-from-lineage-dropped",
        "a model fine-tuned from art://... lists that artifact among its inputs",
        (Edit("train/publish.py",
              "        used.append(init[\"artifact\"])",
              "        pass  # MUTATION"),),
        ("tests/package/test_init_from.py::test_art_uri_source_is_recorded_in_the_models_lineage",),
    ),
    Mutation(
        "resolved-arguments-skip-checksum",
        "an entrypoint job uses the launcher's resolved arguments only for the config.yaml "
        "they were written for",
        (Edit("launch/resolved.py",
              '    if data.get("config_sha256") != digest:',
              '    if False:  # MUTATION: checksum not compared'),),
        ("tests/launch/test_resolved.py::test_the_job_uses_the_launchers_arguments_until_the_"
         "config_or_the_code_changes",
         "tests/launch/test_resolved.py::test_read_resolved_checks_file_function_and_schema"),
    ),
    Mutation(
        "resolved-arguments-skip-schema",
        "an entrypoint job whose function's arguments changed after launch composes again",
        (Edit("launch/resolved.py",
              '    if data.get("schema") != schema_fingerprint(SignatureSchema(fn)):',
              '    if False:  # MUTATION: schema not compared'),),
        ("tests/launch/test_resolved.py::test_the_job_uses_the_launchers_arguments_until_the_"
         "config_or_the_code_changes",),
    ),
    Mutation(
        "resolved-arguments-with-interpolation",
        "a config with ${...} is resolved by the job, never taken pre-resolved from the launcher",
        (Edit("launch/resolved.py",
              "    if to_container(cfg, resolve=False) != resolved:",
              "    if False:  # MUTATION: interpolations pre-resolved"),),
        ("tests/launch/test_resolved.py::test_only_plain_configs_get_resolved_arguments",),
    ),
    Mutation(
        "exit-runs-the-collector",
        "a stoker process exits without a garbage-collector pass over torch (a preempted "
        "job requeues seconds sooner)",
        (Edit("cli/exiting.py", "        atexit.register(_freeze)\n", "        pass\n"),),
        ("tests/cli/test_exiting.py::test_exit_freezes_the_collector_last_and_keeps_buffers_and_code",),
    ),
    Mutation(
        "exit-loses-buffered-writes",
        "exiting without the collector still writes what open files hold in their buffers",
        (Edit("cli/exiting.py", "    _flush_open_files()\n", ""),),
        ("tests/cli/test_exiting.py::test_exit_freezes_the_collector_last_and_keeps_buffers_and_code",),
    ),
    Mutation(
        "prepare-resume-keeps-temp-files",
        "a resumed data prepare is the same files as a clean one (a killed write's temp file goes)",
        (Edit("data/prepare.py", "        _sweep_temp_files(out)\n", "        pass  # MUTATION\n"),),
        ("tests/data/test_cli.py::test_kill_mid_way_then_resume",),
    ),
    Mutation(
        "store-records-unvalidated",
        "every job store record is validated on read: a damaged one is exit 2 naming the "
        "file and field, and never breaks `exp list` for the other experiments",
        (Edit("launch/records.py",
              "        return _adapter(kind).validate_python(data)",
              "        return (kind.model_construct(**data) if hasattr(kind, 'model_construct')"
              " else kind(**data))  # MUTATION: read without validation"),),
        ("tests/launch/test_store_records.py::test_a_damaged_record_is_exit_2_naming_file_"
         "and_field_and_never_hides_the_others",),
    ),
    Mutation(
        "store-handle-fields-unchecked",
        "a handle.json is checked for the fields its executor kind reads (pid: \"abc\" is "
        "exit 2, not a traceback)",
        (Edit("launch/records.py", "_HANDLES.get(base.kind, _Handle)", "_Handle"),),
        ("tests/launch/test_store_records.py::test_a_damaged_record_is_exit_2_naming_file_"
         "and_field_and_never_hides_the_others",),
    ),
    Mutation(
        "store-lost-never-detected",
        "a task whose launcher or driver is gone reads LOST with how to rerun (not PENDING "
        "forever), and `exp logs --follow` of it ends",
        (Edit("launch/driver.py", "    if alive is False:", "    if False:  # MUTATION"),),
        ("tests/launch/test_store_kills.py::test_a_launcher_killed_after_its_commit_leaves_"
         "lost_tasks_that_rerun_runs",
         "tests/launch/test_store_kills.py::test_a_launcher_killed_after_its_first_"
         "submission_loses_only_the_rest"),
    ),
    Mutation(
        "store-commits-before-task-records",
        "experiment.json is the launch's commit, written after every task record: a "
        "launcher killed mid-way leaves no experiment with tasks missing",
        (Edit("launch/experiment.py", "            self._record(exp_id, tasks)\n", ""),
         Edit("launch/experiment.py",
              '"cwd": str(self.cwd), "max_parallel": max_parallel, "sweep": self.sweep})\n',
              '"cwd": str(self.cwd), "max_parallel": max_parallel, "sweep": self.sweep})\n'
              "            self._record(exp_id, tasks)  # MUTATION: after the commit\n")),
        ("tests/launch/test_store_kills.py::test_a_launcher_killed_before_its_commit_leaves_"
         "no_experiment",),
    ),
    Mutation(
        "resume-compares-no-trajectory",
        "a resume with a setting that changes the trajectory stops (exit 2) before writing",
        (Edit("train/trainer.py", "        changes = compare(recorded, self._trajectory)\n",
              "        changes = []  # MUTATION: nothing compared\n"),),
        (f"{REFUSAL}::test_a_resume_with_a_changed_setting_stops_before_writing",),
    ),
    Mutation(
        "allowed-change-not-in-config-yaml",
        "config.yaml never claims a value applied from step 0 when a resume changed it",
        (Edit("train/trainer.py", "            text = config_notes(entries) + text\n",
              "            pass  # MUTATION: the change is not noted\n"),),
        (f"{REFUSAL}::test_allow_changes_continues_in_place_and_records_the_change",
         f"{REFUSAL}::test_more_steps_resume_and_are_noted_in_config_yaml"),
    ),
    Mutation(
        "verify-ignores-weights",
        "stoker verify exits 1 naming the tensor when recorded weights differ from the re-run",
        (Edit("train/verify.py", "            if ta.equal(tb):\n",
              "            if True:  # MUTATION: weights never compared\n"),),
        ("tests/train/test_verify.py::test_verify_names_tampered_weights",),
    ),
    Mutation(
        "verify-ignores-losses",
        "stoker verify exits 1 naming the step when a recorded loss differs from the re-run",
        (Edit("train/verify.py", "        exact = exact and (a == b or (a != a and b != b))\n",
              "        pass  # MUTATION: losses never compared\n"),),
        ("tests/train/test_verify.py::test_verify_names_a_tampered_loss",),
    ),
    Mutation(
        "failed-publish-not-retried",
        "a run that trained to the end but failed to publish publishes on the re-run",
        (Edit("cli/train_cmd.py",
              'if result.status == "already_finished":  # trained, but was it published?',
              "if False:  # MUTATION: already finished means published"),),
        ("tests/train/test_publish_retry.py::test_failed_publish_is_published_by_the_rerun",),
    ),
    Mutation(
        "prepare-workers-outlive-parent",
        "data prepare workers end with their parent on SIGTERM and kill -9",
        (Edit("data/prepare_workers.py", '        _die_with_parent(int(ctx["parent"]))\n',
              "        pass  # MUTATION\n"),),
        ("tests/data/test_prepare_orphans.py::test_workers_end_with_their_parent",),
    ),
    Mutation(
        "publish-copies-temp-files",
        "a publish never copies stoker's own temp files (concurrent publishes of one directory)",
        (Edit("artifacts/manifest.py", "        if _is_own_file(rel):\n",
              "        if posixpath.basename(rel) == SIDECAR:  # MUTATION\n"),),
        ("tests/artifacts/test_publish_same_dir.py::"
         "test_stoker_temp_files_in_a_published_directory_are_not_content",),
    ),
    Mutation(
        "control-chars-in-output-paths",
        "an output path with a newline or another control character is exit 2 before any write",
        (Edit("atomic.py", '        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):',
              "        if False:  # MUTATION"),),
        ("tests/train/test_output_dir_chars.py::"
         "test_train_refuses_a_control_character_in_output_dir",
         "tests/train/test_output_dir_chars.py::test_data_prepare_refuses_a_newline_in_output_dir"),
    ),
    Mutation(
        "pack-keeps-stale-temps",
        "a pack removes the temp file a killed pack left beside its output",
        (Edit("package/packing.py", "    remove_stale_temps(out)\n", "    pass  # MUTATION\n"),),
        ("tests/package/test_pack_interrupts.py::"
         "test_sigterm_removes_the_temp_and_a_killed_packs_temp_is_removed_next_time",),
    ),
    Mutation(
        "closed-pipe-ends-the-run",
        "a closed stdout/stderr pipe never costs a run",
        (Edit("cli/closed_console.py",
              "            if isinstance(exc, BrokenPipeError) or exc.errno in _CLOSED:",
              "            if False:  # MUTATION"),),
        ("tests/train/test_closed_console.py::test_training_goes_on_when_its_output_pipe_closes",),
    ),
    Mutation(
        "export-hf-full-disk-traceback",
        "export hf on a full disk is exit 1 with a message, not a SafetensorError traceback",
        (Edit("package/hf_export.py", "        failure = _os_error(exc)\n",
              "        failure = None  # MUTATION\n"),),
        ("tests/package/test_export_full_disk.py::test_export_hf_on_a_full_disk",),
    ),
    Mutation(
        "user-code-outside-git-not-hashed",
        "a project outside git records a content hash of its modules (it changes with them)",
        (Edit("artifacts/code_version.py", "            files[str(path)] = _sha256_file(path)\n",
              "            pass  # MUTATION\n"),),
        ("tests/train/test_code_provenance.py::"
         "test_a_project_outside_git_records_its_content_not_stokers_checkout",),
    ),
    Mutation(
        "archive-manifest-unbounded",
        "an archive's MANIFEST.json is refused on its declared size before it is read",
        (Edit("package/archive.py", "raw = self._raw(MANIFEST, MAX_JSON_BYTES)",
              "raw = self._raw(MANIFEST, 1 << 40)  # MUTATION: no bound"),),
        (f"{UNTRUSTED}::test_oversized_manifest_is_refused_before_it_is_read",),
    ),
    Mutation(
        "archive-sparse-members-pass",
        "a GNU sparse tar member (gigabytes claimed from a few bytes) is refused",
        (Edit("package/archive.py",
              "if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:",
              "if False:  # MUTATION: sparse members pass as regular files"),),
        (f"{UNTRUSTED}::test_sparse_manifest_claiming_2gib_is_refused_in_bounded_memory",),
    ),
    Mutation(
        "safetensors-overlap-accepted",
        "safetensors tensors must tile the data region (two over the same bytes refused)",
        (Edit("train/checkpoint/tensors.py", "        if start != at:\n",
              "        if False:  # MUTATION: overlaps and gaps accepted\n"),),
        (f"{UNTRUSTED}::test_overlapping_tensors_are_refused_through_the_api",
         f"{UNTRUSTED}::test_malformed_safetensors_headers_are_refused"),
    ),
    Mutation(
        "tokenizer-path-escapes",
        "the file a stoker_tokenizer.json names stays inside the tokenizer directory",
        (Edit("data/tokenizers.py",
              """    f = inside(d, info.get("file"), f"{marker}: 'file'", DataError)""",
              """    f = d / str(info.get("file"))  # MUTATION: no containment"""),),
        (f"{UNTRUSTED}::test_tokenizer_marker_cannot_read_outside_the_archive",
         "tests/package/test_untrusted_fuzz.py::test_tokenizer_paths_never_lead_outside"),
    ),
    Mutation(
        "hf-index-escapes",
        "the weight files an HF index names stay inside the directory",
        (Edit("package/hf_import.py",
              """out.append((n, inside(d, n, f"{where}: weight_map")))""",
              "out.append((n, d / n))  # MUTATION: no containment"),),
        (f"{UNTRUSTED}::test_hf_index_paths_stay_inside_and_the_index_is_checked",),
    ),
]
