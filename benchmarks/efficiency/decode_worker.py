"""One CART search index in its own process, timed on request: the worker of `versus_commit`.

Run as a plain script with PYTHONPATH pointing at the `src/` of the code to time (this tree's
or an older commit's), so it may import only what every version of `cart_pipeline` since the
search code was first timed has: `CartIndex`, `CartDecoder`, `DecoderConfig`,
`IdentifierTrie` and `MiniLMTextEncoder`. Nothing from `benchmarks` (an older tree has none).

    PYTHONPATH=<src> python benchmarks/efficiency/decode_worker.py SPEC.json [--int8]

SPEC.json: identifier tokens (.npy path), vocab size, position ranges, query texts, beam,
seed. Protocol on stdin/stdout, one line each: the worker prints `READY {...}` once the index
is built and warmed up; each `time` line answers `RESULT {"encode_s": ..., "decode_s": ..., "cpu_s": ...}`
for one batch of every text; `quit` ends it. Other output (logs) goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> int:
    spec = json.loads(open(sys.argv[1]).read())
    int8 = "--int8" in sys.argv[2:]
    torch.set_num_threads(spec["threads"])
    import cart_pipeline
    from cart_pipeline.core.decoder import CartDecoder, DecoderConfig, IdentifierTrie
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder
    from cart_pipeline.core.retrieval.cart import CartIndex

    tokens = np.load(spec["tokens"])
    torch.manual_seed(spec["seed"])
    config = DecoderConfig(
        vocab_size=spec["vocab_size"],
        position_ranges=[tuple(r) for r in spec["position_ranges"]],
    )
    index = CartIndex(
        CartDecoder(config).eval(),
        IdentifierTrie.from_tokens(tokens),
        np.arange(len(tokens)),
        MiniLMTextEncoder(),
    )
    if int8:
        index = index.int8()
    texts, beam = spec["texts"], spec["beam"]

    def batch() -> dict:
        cpu = time.process_time()
        _, _, timings = index.search(texts, top_k=beam, beam_size=beam, batch_size=len(texts))
        return {
            "encode_s": timings["encode_s"],
            "decode_s": timings["decode_s"],
            "cpu_s": time.process_time() - cpu,
        }

    batch()  # warm-up
    print("READY " + json.dumps({"module": cart_pipeline.__file__}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print("RESULT " + json.dumps(batch()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
