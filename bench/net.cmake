# emp-transport-bench: every data-path candidate's read latency/throughput next to a
# plain-socket floor. Included from bench/CMakeLists.txt.
if(TARGET emp_vmd)
  add_executable(emp-transport-bench ${CMAKE_CURRENT_LIST_DIR}/transport_bench.cc)
  target_link_libraries(emp-transport-bench PRIVATE emp_vmd)
endif()
