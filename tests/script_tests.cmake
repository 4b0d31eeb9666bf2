# Tests run by ctest outside GoogleTest: the corpus converters (Python), parity with an
# independent PyTorch model, and multi-process launches.
add_test(NAME python.text_clean
         COMMAND ${DEMIX_PYTHON} tests/data/test_text_clean.py
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

# Interrupted runs: SIGINT checkpoints and stops, --resume auto continues, metrics stay unique.
add_test(NAME train.interrupt COMMAND bash tests/train/interrupt_test.sh
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(train.interrupt PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 300
                     ENVIRONMENT "DEMIX_BIN=$<TARGET_FILE:demix>;PYTHON=${DEMIX_PYTHON}")

# A command's --help shows a --set example that the command reads.
add_test(NAME cli.set_examples
         COMMAND bash -c "for c in data tokenizer; do \"$1\" $c --help | grep -- '--set' | grep -v optim. || { echo \"$c --help shows no --set example of its own\"; exit 1; }; done"
                 _ $<TARGET_FILE:demix>)

# Parity: the C++ logits against tests/model/parity_check.py's float64 PyTorch model, for a DEMix
# model (experts in some layers only) and for the dense +DOMAIN-TOKEN baseline.
foreach(variant demix domain_token)
  if(variant STREQUAL "demix")
    set(parity_overrides --set model.demix_layers=[0,2])
  else()
    set(parity_overrides --set model.ff=dense --set model.domain_token=true)
  endif()
  set(parity_dir ${CMAKE_BINARY_DIR}/parity_${variant})
  add_test(NAME parity.${variant}.dump
           COMMAND demix_parity_dump configs/tiny.yaml ${parity_dir}
                   --set model.n_layer=3 --set model.seq_len=32 ${parity_overrides}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(parity.${variant}.dump PROPERTIES FIXTURES_SETUP parity_${variant})
  add_test(NAME parity.${variant}.check
           COMMAND ${DEMIX_PYTHON} tests/model/parity_check.py ${parity_dir}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(parity.${variant}.check PROPERTIES FIXTURES_REQUIRED parity_${variant})
endforeach()

# Multi-process launches (Gloo): demix launch, torchrun, a rank that dies or hangs mid-run, and
# SIGKILLs of a whole run followed by resumes.
foreach(mode launch torchrun dead_rank hung_rank signals kill_resume)
  add_test(NAME parallel.${mode} COMMAND bash tests/parallel/launch_test.sh ${mode}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(parallel.${mode} PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 400 RUN_SERIAL ON
                       ENVIRONMENT DEMIX_BIN=$<TARGET_FILE:demix>)
endforeach()

# The domain posterior and mixture against NumPy, on the posterior dump of the DEMix parity run.
add_test(NAME parity.posterior.check
         COMMAND ${DEMIX_PYTHON} tests/eval/posterior_check.py ${CMAKE_BINARY_DIR}/parity_demix
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(parity.posterior.check PROPERTIES FIXTURES_REQUIRED parity_demix)

# The cluster features (tf-idf, SVD, distances, router weights) against float64 NumPy.
add_test(NAME cluster.features.dump
         COMMAND demix_features_dump ${CMAKE_BINARY_DIR}/cluster_features.json)
set_tests_properties(cluster.features.dump PROPERTIES FIXTURES_SETUP cluster_features)
add_test(NAME cluster.features.check
         COMMAND ${DEMIX_PYTHON} tests/cluster/features_check.py
                 ${CMAKE_BINARY_DIR}/cluster_features.json
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cluster.features.check PROPERTIES FIXTURES_REQUIRED cluster_features)

# The benchmark harness in smoke mode: it runs, and the PyTorch reference computes the same loss
# on the same weights and batch (demix bench fails otherwise). Speed is not judged here.
add_test(NAME bench.smoke
         COMMAND demix bench --config configs/tiny.yaml --set model.n_layer=1 --set model.seq_len=64
                 --steps 1 --warmup 1 --rounds 2 --eval-tokens 512 --no-compile
                 --out ${CMAKE_BINARY_DIR}/test_runs/bench_smoke
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(bench.smoke PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 300)

# The scaling simulator's all-reduced bytes against GradSync's on 4 Gloo ranks.
add_test(NAME bench.simulate_bytes COMMAND bash tests/bench/simulate_bytes_test.sh
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(bench.simulate_bytes PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 300 RUN_SERIAL ON
                     ENVIRONMENT "DEMIX_BIN=$<TARGET_FILE:demix>;PYTHON=${DEMIX_PYTHON}")

# Python access: the Hugging Face export reproduces the C++ token ids and log-probs (and the merged
# export is an independent prior-weighted average); the Python snippet of docs/checkpoints.md
# runs.
foreach(mode export readme)
  if(mode STREQUAL "export")
    set(name interop.hf_export)
  else()
    set(name interop.readme_python)
  endif()
  add_test(NAME ${name} COMMAND bash tests/interop/hf_export_test.sh ${mode}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 300
                       ENVIRONMENT "DEMIX_BIN=$<TARGET_FILE:demix>;PYTHON=${DEMIX_PYTHON}")
endforeach()

# docs/config.md is `demix config --reference`: a key added, renamed or re-documented in the code
# without regenerating it (scripts/docs.sh) fails here.
add_test(NAME docs.config_reference
         COMMAND bash -c "diff <(sed '1,/^<!-- generated/d' docs/config.md) <(\"$1\" config --reference)"
                 _ $<TARGET_FILE:demix>
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

# `demix eval --text` scores a corpus text file as `demix eval` scores its token file (dense and
# DEMix), --token-logprobs does not depend on eval.batch_size, and reports land in the run.
add_test(NAME eval.text COMMAND bash tests/eval/eval_text_test.sh
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(eval.text PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 300
                     ENVIRONMENT "DEMIX_BIN=$<TARGET_FILE:demix>;PYTHON=${DEMIX_PYTHON}")

# The documentation's commands: every shell line of README.md and docs/ names existing
# subcommands, options, config keys, configs and scripts, and every link resolves
# (docs.commands); the README's tour runs as written on a fresh clone and leaves it clean
# (docs.tour).
add_test(NAME docs.commands COMMAND ${DEMIX_PYTHON} tests/docs/check_docs.py commands
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(docs.commands PROPERTIES ENVIRONMENT DEMIX_BIN=$<TARGET_FILE:demix>)
add_test(NAME docs.tour COMMAND ${DEMIX_PYTHON} tests/docs/check_docs.py tour
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(docs.tour PROPERTIES FIXTURES_REQUIRED corpus TIMEOUT 1800 RUN_SERIAL ON
                     ENVIRONMENT DEMIX_BIN=$<TARGET_FILE:demix>)

# The folders' layering: includes against the graph CMakeLists.txt declares, and its drawing in
# docs/architecture.md.
add_test(NAME architecture.layers
         COMMAND ${DEMIX_PYTHON} tests/architecture/check_layers.py ${CMAKE_BINARY_DIR}/layers.json
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
