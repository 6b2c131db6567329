"""Oracle: the upper bound, trained on *labelled* target train images with the same schedule.

It is the only method that declares ``uses_target_labels``; the harness withholds target labels
from every other method. Its row is the reference of the oracle-gap table.
"""

from udabench import Method, register


@register
class Oracle(Method):
    name = "oracle"
    display_name = "Oracle"
    role = "upper_bound"
    paper = "upper bound (supervised on target)"
    description = "supervised cross-entropy on labelled target train images"
    uses_source = False
    uses_target_labels = True

    def train_step(self, source, target, step):
        return self.ctx.supervised_step(target)
