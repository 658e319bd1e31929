"""What the codebases that build darknet `.cfg` models share: their create_modules dispatch (`if DEF["type"] ==
...` chains, edited by `ast`), the builder function an injected branch calls, and the measuring of a model
their own Darknet class built (the child of `check MODEL.cfg --repo PATH`)."""
