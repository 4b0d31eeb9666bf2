# Python-side checks run by ctest through the project's venv: the markup converters of the corpus
# builder, and parity of the C++ model with an independent PyTorch implementation.
add_test(NAME python.text_clean
         COMMAND ${DEMIX_PYTHON} tests/data/test_text_clean.py
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

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
