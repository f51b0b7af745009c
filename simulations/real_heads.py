"""Figure real_heads: the heads of all-MiniLM-L6-v2 against the metric case (THEORY.md section 7).

Per layer and head: the distance of the head's attention rows to its metric model (Mahalanobis part
(A_s)_+ / 2 with the key potential u), the share of tokens whose top key is the token itself, the row entropy,
and the antisymmetric share of A = W_Q^T W_K / sqrt(d_head); the attention of the closest and the farthest
head against its metric model on one sentence. Needs the extra ``real``.

Writes results/real_heads.h5 and figures/real_heads.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("real_heads"))
