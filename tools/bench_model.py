"""Generator cost on this CPU as a markdown table: `python tools/bench_model.py [--out docs/bench_model.md]`."""

from marionette.model.bench import main

if __name__ == "__main__":
    main()
