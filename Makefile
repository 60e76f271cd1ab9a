# Sharpeye: the everyday commands.
PEERS ?= postgres

.PHONY: test test-e2e lint bench demo build

build:
	go build -o bin/sharpeye .

demo:
	go run . demo

# Fast, nothing installed: in-process peers only.
test:
	go test ./...

# With the installed peers (what CI runs: installs and starts them first).
test-e2e:
	bash .ci/run

lint:
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi

bench:
	go test -run '^$$' -bench . -benchmem ./...
