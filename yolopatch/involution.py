"""Involution (Li et al., CVPR 2021, https://arxiv.org/abs/2103.06255) for the built-in builder.

The class comes from templates/involution.py, the same text `inject` pastes into a YOLOv5 common.py,
executed here with yolopatch's own Conv in place of YOLOv5's.
"""

from yolopatch.template import template_path, template_source

exec(compile(template_source(), str(template_path()), "exec"))  # defines Involution, InvolutionAggregate
