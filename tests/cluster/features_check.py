"""The cluster features of demix_features_dump against an independent float64 NumPy computation.

tf-idf (sublinear tf, smooth idf, L2 rows), the truncated SVD (an exact SVD here, against the
C++ randomised one), the LSA features (projection, L2 rows), squared distances to the k-means
centres, the balance of the k-means labels, and the router weights softmax(-d^2 / T).
Usage: features_check.py DUMP.json
"""

import json
import sys

import numpy as np


def main(path):
    dump = json.load(open(path))
    vocab, dims, temperature = dump["vocab"], dump["dims"], dump["temperature"]
    docs = dump["docs"]
    n = len(docs)
    counts = np.zeros((n, vocab))
    for i, doc in enumerate(docs):
        for token in doc:
            counts[i, token] += 1
    df = (counts > 0).sum(0)
    idf = np.where(df > 0, np.log((1 + n) / (1 + df)) + 1, 0.0)
    tf = np.where(counts > 0, 1 + np.log(np.maximum(counts, 1)), 0.0)
    tfidf = tf * idf
    tfidf /= np.linalg.norm(tfidf, axis=1, keepdims=True)

    errors = []

    def close(name, got, want, tol):
        got = np.asarray(got, dtype=np.float64).reshape(np.shape(want))
        err = np.abs(got - want).max()
        print(f"{name}: max abs error {err:.2e} (tolerance {tol:.0e})")
        if not err <= tol:
            errors.append(name)

    close("idf", dump["idf"], idf, 1e-5)
    close("tf-idf rows", dump["tfidf"], tfidf, 1e-6)

    _, singular, vt = np.linalg.svd(tfidf, full_matrices=False)
    components = vt[:dims]
    largest = np.abs(components).argmax(1)
    components *= np.sign(components[np.arange(dims), largest])[:, None]
    close("SVD components", dump["components"], components, 1e-6)
    features = tfidf @ components.T
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    close("LSA features", dump["features"], features, 1e-6)

    # the distances of the dumped features (the C++ SVD basis) to the dumped centres
    dumped = np.asarray(dump["features"]).reshape(n, dims)
    centres = np.asarray(dump["centres"]).reshape(-1, dims)
    distances = ((dumped[:, None, :] - centres[None, :, :]) ** 2).sum(2)
    close("squared distances", dump["distances"], distances, 1e-6)
    sizes = np.bincount(dump["labels"], minlength=len(centres))
    print(f"k-means sizes {sizes.tolist()}")
    if sizes.max() - sizes.min() > 1:
        errors.append("balanced sizes")
    logits = -np.asarray(dump["distances"]).reshape(n, -1) / temperature
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    close("router weights", dump["weights"], weights, 1e-9)

    if errors:
        sys.exit("features_check: mismatch in " + ", ".join(errors))
    print(f"features_check: ok (singular values {np.round(singular[:dims], 3).tolist()})")


if __name__ == "__main__":
    main(sys.argv[1])
