"""Ad click prediction client: raw ids of 8 sparse fields + 6 dense features -> click probability.

    python examples/clients/ad_click_prediction.py [--protocol grpc] [--url HOST:PORT]

The graph hashes the raw ids and log-scales the dense features itself: no client pre-processing.
The mlsd KServe predictor also returns `ctr`, the calibrated click-through rate.
"""

import numpy as np
from _common import infer, parse

FIELDS = ("user", "ad", "advertiser", "publisher", "site_category", "device", "hour", "country")
DENSE = ("user_age_days", "ad_price", "page_views", "session_seconds", "past_clicks", "position")

args = parse(__doc__.splitlines()[0], "ad-click-prediction")
impressions = {
    "sparse_ids": np.array([[123456, 42, 7, 301, 12, 3, 20, 44],       # a frequent ad, evening, position 1
                            [987654, 199999, 19999, 49999, 299, 49, 3, 59]], dtype=np.int64),
    "dense": np.array([[800, 1.2, 35, 600, 4, 1], [2, 0.1, 1, 5, 0, 9]], dtype=np.float32),
}
result, outputs = infer(args, impressions)
for i in range(2):
    line = ", ".join(f"{name}={result.as_numpy(name)[i, 0]:.4f}" for name in outputs)
    print(f"impression {i}: {line}")
