"""Studies and demos built on the runtime: the paper's Gaussian-mixture study (``gmm*``),
the coloured-shapes world and its trained pair (``shapes``), ``w2sd eval`` (``evaluate``)
and ``w2sd demo`` (``demos``). They import the runtime; the runtime never imports them."""
