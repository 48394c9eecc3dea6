"""PostgreSQL version numbers, read one way everywhere.

``server_version_num`` is ``MMmmpp`` from 10 on (180004: major 18, minor 4) and ``MMmmpp`` with a two-part
major before it (90624: major 9.6, minor 24). Dividing 90624 as if it were 10+ gives "major 906", which once
made pgvault refuse every 9.x server; every major comparison goes through :class:`PgVersion` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

# pg_dump of any release from 15 on dumps servers from 9.2 on (older ones need an older pg_dump).
OLDEST_DUMPABLE = 90200


@total_ordering
@dataclass(frozen=True)
class PgVersion:
    num: int  # server_version_num

    @property
    def major(self) -> tuple[int, ...]:
        """(18,) or (9, 6): ordered, so that 9.6 < 10 and 9.2 < 9.6."""
        if self.num >= 100000:
            return (self.num // 10000,)
        return (self.num // 10000, self.num // 100 % 100)

    @property
    def major_label(self) -> str:
        """"18", "9.6": how PostgreSQL names its majors (and the folder names servers are found under)."""
        return ".".join(str(p) for p in self.major)

    @property
    def label(self) -> str:
        """"18.4", "9.6.24"."""
        minor = self.num % 100 if self.num < 100000 else self.num % 10000
        return f"{self.major_label}.{minor}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, PgVersion):
            return NotImplemented
        return self.num < other.num

    @classmethod
    def of_major(cls, major: int | str) -> PgVersion:
        """The first release of a major ("9.6" or 15), for comparisons by major."""
        text = str(major)
        if "." in text:
            first, second = (int(p) for p in text.split(".", 1))
            return cls(first * 10000 + second * 100)
        return cls(int(text) * 10000)


def major_of(version_num: int) -> str:
    return PgVersion(version_num).major_label
