from setuptools import find_packages, setup

package_name = 'lekiwi_fleet_server'

# Keep in step with requirements/server.txt (a test checks it).
install_requires = [
    'fastapi==0.165.0',
    'uvicorn==0.54.0',
    'SQLAlchemy==2.1.9',
    'psycopg[binary]==3.3.9',
    'alembic==1.20.1',
    'pydantic==2.14.4',
    'pydantic-settings==2.16.3',
    'prometheus-client==0.26.0',
    'picows==2.3.1',
    'orjson==3.13.0',
    'argon2-cffi==25.1.0',
    'strawberry-graphql==0.341.2',
    'zeroconf==0.154.0',
    'websockets==17.4',
    'asyncssh==2.24.1',
    'PyYAML==6.0.4',
    'cryptography==50.0.2',
    'nats-py==2.16.0',
]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    include_package_data=True,
    package_data={package_name: ['migrations/*.ini', 'migrations/*.mako', 'static/*',
                                'dashboard_dist/*', 'dashboard_dist/assets/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    python_requires='>=3.10',
    install_requires=install_requires,
    extras_require={'test': ['pytest', 'pytest-cov', 'pytest-timeout', 'hypothesis', 'httpx',
                             'jsonschema',
                             'schemathesis']},
    zip_safe=False,
    maintainer='LeKiwi Fleet',
    maintainer_email='fleet@lekiwi.dev',
    description='LeKiwi Fleet server: event store, robot gateway and APIs.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'lekiwi-fleet-server = lekiwi_fleet_server.cli:main',
        ],
    },
)
