# LeKiwi Fleet robot agent on the official ROS 2 Jazzy image.
# Build from the repository root:  docker build -f docker/agent.Dockerfile -t lekiwi-agent .
# Run on the robot's host network so DDS reaches the robot's own nodes:
#   docker run --net=host -e LEKIWI_ROBOT_ID=kiwi-001 -e LEKIWI_SERVER_URL=wss://fleet.example/ \
#     -v /etc/lekiwi/robot-token:/run/secrets/robot_token:ro \
#     -v lekiwi-agent:/var/lib/lekiwi lekiwi-agent
FROM ros:jazzy-ros-base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip ros-jazzy-sensor-msgs \
    && rm -rf /var/lib/apt/lists/*

COPY requirements/agent.txt /tmp/requirements-agent.txt
RUN pip install --no-cache-dir --break-system-packages -r /tmp/requirements-agent.txt

WORKDIR /opt/lekiwi_ws
COPY colcon.meta ./
COPY launch ./launch
COPY config ./config
COPY src/lekiwi_fleet_msgs ./src/lekiwi_fleet_msgs
COPY src/lekiwi_agent_ros ./src/lekiwi_agent_ros
RUN source /opt/ros/jazzy/setup.bash \
    && colcon build --packages-select lekiwi_fleet_msgs lekiwi_agent_ros \
    && rm -rf build log

ENV HOME=/var/lib/lekiwi \
    LEKIWI_ROBOT_ID=kiwi-001 \
    LEKIWI_SERVER_URL=ws://127.0.0.1:9090/
VOLUME ["/var/lib/lekiwi"]
CMD ["bash", "-c", "source /opt/lekiwi_ws/install/setup.bash && exec ros2 launch lekiwi_agent_ros robot.launch.py robot_id:=\"$LEKIWI_ROBOT_ID\" server_url:=\"$LEKIWI_SERVER_URL\" token_file:=/run/secrets/robot_token"]
