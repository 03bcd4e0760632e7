# Installs the built library into a scratch prefix and builds + runs a consumer project that
# finds it with find_package(fsad). Invoked by ctest (test "package").
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${WORK}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/package/consumer -B ${WORK}/build
                        -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCMAKE_BUILD_TYPE=Release
                        -DFSAD_EXAMPLES_DIR=${SRC}/examples
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${WORK}/build/consumer ${WORK}/images RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "consumer said: ${out}")
if(rc OR NOT out MATCHES "feature dim 64")
  message(FATAL_ERROR "consumer failed (${rc}): ${out}")
endif()
# the embedding example: fit on good/, score test/, write the model
execute_process(COMMAND ${WORK}/build/embed ${WORK}/images/good ${WORK}/images/test --width 0.125 --res 32 --steps 1
                        -o ${WORK}/model.fsad
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "embed said: ${out}${err}")
if(rc OR NOT EXISTS ${WORK}/model.fsad OR NOT out MATCHES "img5.png")
  message(FATAL_ERROR "embedding example failed (${rc}): ${out} ${err}")
endif()
