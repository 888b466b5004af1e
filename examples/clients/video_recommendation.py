"""Video recommendation client: a user (id + features) -> candidates from ANN retrieval, scored by
the ranking model; the mlsd KServe predictor also returns the top 10 in ranked order.

    python examples/clients/video_recommendation.py [--protocol grpc] [--url HOST:PORT]

user_features = language one-hot (3), preferred duration one-hot (3), activity (1), topic mix of the
user's watch history (8).
"""

import numpy as np
from _common import infer, parse

args = parse(__doc__.splitlines()[0], "video-recommendation")
features = np.zeros((1, 15), dtype=np.float32)
features[0, 0] = 1          # language 0
features[0, 4] = 1          # prefers medium-length videos
features[0, 6] = 0.8        # active user
features[0, 7:] = [0.6, 0.2, 0.1, 0.1, 0, 0, 0, 0]   # mostly watches topic 0
result, outputs = infer(args, {"user_id": np.array([[17]], dtype=np.int64), "user_features": features})
if "ranked_ids" in outputs:
    ids, scores = result.as_numpy("ranked_ids")[0], result.as_numpy("ranked_scores")[0]
else:                        # tritonserver's ensemble returns candidates in retrieval order
    order = np.argsort(-result.as_numpy("scores")[0])[:10]
    ids, scores = result.as_numpy("candidate_ids")[0][order], result.as_numpy("scores")[0][order]
for rank, (video, p) in enumerate(zip(ids, scores), 1):
    print(f"{rank:2d}. video {video:5d}  p(watch) {p:.3f}")
