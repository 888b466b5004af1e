"""Visual search client: a 32x32 RGB image -> its embedding and the 10 most similar catalogue items.

    python examples/clients/visual_search.py [--protocol grpc] [--url HOST:PORT]
"""

import numpy as np
from _common import infer, parse

args = parse(__doc__.splitlines()[0], "visual-search")
yy, xx = np.mgrid[0:32, 0:32]
circle = ((yy - 16) ** 2 + (xx - 15) ** 2 <= 49).astype(np.float32)
image = np.empty((1, 3, 32, 32), dtype=np.float32)
for channel, (fill, background) in enumerate(((0.9, 0.2), (0.15, 0.2), (0.15, 0.3))):   # a red circle
    image[0, channel] = background * (1 - circle) + fill * circle
result, _ = infer(args, {"image": image})
print("embedding[:4]", np.round(result.as_numpy("embedding")[0, :4], 3))
for rank, (item, score) in enumerate(zip(result.as_numpy("neighbour_ids")[0], result.as_numpy("neighbour_scores")[0]), 1):
    print(f"{rank:2d}. catalogue item {item:5d}  cosine {score:.3f}")
