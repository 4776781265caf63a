"""The four schedulers of Xen 4.7 and a registry by ``sched=`` name.

``SCHEDULERS`` maps the boot-parameter name (``credit``, ``credit2``, ``rtds``,
``arinc653``) to the class, as Xen's ``schedulers[]`` array does for ``sched=``.
"""

from __future__ import annotations

from xensched.schedulers.arinc653 import Arinc653 as Arinc653
from xensched.schedulers.base import Scheduler as Scheduler
from xensched.schedulers.credit import Credit as Credit
from xensched.schedulers.credit2 import Credit2 as Credit2
from xensched.schedulers.rtds import Rtds as Rtds

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.opt_name: cls for cls in (Credit, Credit2, Rtds, Arinc653)
}

__all__ = ["SCHEDULERS", "Arinc653", "Credit", "Credit2", "Rtds", "Scheduler"]
