# LeKiwi Fleet: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: demo test build lint bench-gateway bench-store bench-agent bench-teleop bench-dashboard bench-discovery bench-recovery clean

demo:  ## Fleet server on the embedded database plus one simulated LeKiwi robot
	scripts/demo.sh

test:  ## Build, colcon test, system tests, coverage; non-zero on any failure
	scripts/test.sh

build:
	scripts/bootstrap.sh && bash -c 'source scripts/env.sh && colcon build'

lint:
	scripts/bootstrap.sh && .venv/bin/ruff check src tests scripts launch

bench-gateway:
	bash -c 'source scripts/env.sh && python tests/bench/gateway.py'

bench-store:
	bash -c 'source scripts/env.sh && python tests/bench/store_ingest.py'

bench-agent:
	bash -c 'source scripts/env.sh && python tests/bench/agent_footprint.py'

bench-teleop:
	bash -c 'source scripts/env.sh && python tests/bench/teleop_detection.py'

bench-dashboard:
	bash -c 'source scripts/env.sh && python tests/bench/dashboard.py'

bench-discovery:
	bash -c 'source scripts/env.sh && python tests/bench/discovery.py'

bench-recovery:
	bash -c 'source scripts/env.sh && python tests/bench/recovery.py'

clean:
	rm -rf build install log
