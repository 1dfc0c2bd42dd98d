"""The playground: a local web page where every optimizer run of the lab is one slider away.

``descend playground`` serves it (:mod:`descend.lab.playground.server`). The page only draws:
every path, loss, rate and theory value comes from the server, computed with descend's own
rules (:mod:`descend.lab.playground.compute`), and so are the words beside each plot that say why a
setting converges or diverges (:mod:`descend.lab.playground.explain`); the controls derive from
the rules' specs (:mod:`descend.lab.playground.controls`). The page's scripts (``static/``):
``plot.js`` draws, ``figures.js`` lays out each figure and its words, ``playground.js`` keeps
the settings and talks to the server.
"""

#: Where ``descend playground`` listens unless told otherwise: this machine only.
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
