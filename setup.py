"""yaypm: Yate external modules in Python, on Twisted Deferreds."""
from setuptools import find_packages, setup

setup(
    name="yaypm",
    version="0.1.0",
    description="Write Yate external modules (IVR, routing, call control, DSM) with Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["yaypm", "yaypm.*"]),
    include_package_data=True,
    package_data={"yaypm": ["py.typed", "dsm/*.lark", "apps/*/*.sql", "apps/*/*.conf",
                            "apps/*/*.dsm", "apps/*/dsm/*.dsm", "apps/*/dsm/*.conf",
                            "prompts/*", "testing/*.conf"]},
    install_requires=[
        "Twisted>=24.3",
        "lark>=1.1",
        "prometheus_client>=0.17",
    ],
    extras_require={
        "sql": ["PyMySQL>=1.0", "psycopg2-binary>=2.9"],
        "test": ["pytest>=8", "pytest-twisted>=1.14", "pytest-timeout>=2.2", "hypothesis>=6", "PyMySQL>=1.0",
                 "psycopg2-binary>=2.9"],
        "bench": ["python-yate"],
    },
    entry_points={
        "console_scripts": ["yaypm = yaypm.cli:main"],
        "pytest11": ["yaypm = yaypm.testing.plugin"],
    },
    classifiers=["Framework :: Twisted", "Topic :: Communications :: Telephony"],
)
