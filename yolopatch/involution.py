"""Involution (Li et al., CVPR 2021, https://arxiv.org/abs/2103.06255) for the built-in builder.

The class comes from templates/involution.py, the same text `inject` pastes into a YOLOv5 common.py,
executed here with yolopatch's own Conv in place of YOLOv5's.
"""

import torch
from torch import nn

from yolopatch.modules import Conv
from yolopatch.template import template_path, template_source

# The template refers to torch, nn and Conv as module globals, as it does inside common.py.
exec(compile(template_source(), str(template_path()), "exec"))  # defines Involution, InvolutionAggregate
